"""Real commerce/PIM exports through the shipped mappings, fed exactly as exported.

The exports live in ``shared/cases/pim-exports/<system>/`` beside the clone; their README
states what correct Threekit output is. Each system is also run on a small export of our
own (``include/mappings/samples/<system>/``) with other attributes, locales and
currencies, to show the mapping reads the system's format rather than one sample.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from threekit_pipeline.cli import main
from threekit_pipeline.pipelines import catalog_import
from threekit_pipeline.transform import group_batches, load_mapping
from threekit_pipeline.transform.mapping import MAPPINGS_DIR

EXPORTS = Path(__file__).resolve().parents[2] / ".." / "shared" / "cases" / "pim-exports"
SAMPLES = MAPPINGS_DIR / "samples"
PACKED = ("=", "|", ":color:", ":select:")


def _require(system: str) -> Path:
    folder = EXPORTS / system
    if not folder.is_dir():
        pytest.skip(f"real exports not found at {folder.resolve()} (shared/ must sit beside the clone)")
    return folder


class Run:
    """Outcome of one ``threekit-pipeline transform`` call."""

    def __init__(self, code: int, stdout: str, out: Path, err: Path):
        self.code, self.stdout = code, stdout
        self.items = {}
        for line in out.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            self.items[entry["query"]["metadata"][0]["defaultValue"]] = entry["product"]
        with open(err, encoding="utf-8", newline="") as handle:
            self.errors = list(csv.DictReader(handle))
        translations = out.with_name(out.name + ".translations.csv")
        self.translations = []
        if translations.exists():
            with open(translations, encoding="utf-8", newline="") as handle:
                self.translations = list(csv.DictReader(handle))

    def attrs(self, sku: str) -> dict[str, dict]:
        return {a["name"]: a for a in self.items[sku].get("attributes", []) if a["type"] == "String"}

    def prices(self, sku: str) -> dict[str, dict[str, float]]:
        pricing = [a for a in self.items[sku].get("attributes", []) if a["type"] == "Pricing"]
        assert len(pricing) <= 1
        return {book["pricebook"]: book["currencies"] for book in (pricing[0]["values"] if pricing else [])}

    def meta(self, sku: str) -> dict[str, dict]:
        return {m["name"]: m for m in self.items[sku]["metadata"]}

    def meta_values(self, sku: str) -> list[str]:
        return [str(m["defaultValue"]) for m in self.items[sku]["metadata"]]


def transform(tmp_path: Path, mapping: str, files: list[Path]) -> Run:
    """``threekit-pipeline transform --mapping <mapping> --output out.jsonl --errors err.csv <files>``
    (the console script's entry point, in this process), which must exit 0."""
    out, err = tmp_path / "out.jsonl", tmp_path / "err.csv"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["transform", "--mapping", mapping, "--output", str(out), "--errors", str(err), *map(str, files)])
    assert code == 0, printed.getvalue()
    return Run(code, printed.getvalue(), out, err)


def assert_nothing_rejected(run: Run) -> None:
    """Listed rows are reports: no row and no file counts as rejected."""
    assert "Rows rejected:     0\n" in run.stdout and "Files rejected:    0\n" in run.stdout, run.stdout


def test_cli_console_script_runs_an_export(tmp_path):
    """Once through the installed console script, as a user runs it."""
    folder = _require("magento")
    out, err = tmp_path / "out.jsonl", tmp_path / "err.csv"
    completed = subprocess.run(
        [sys.executable, "-m", "threekit_pipeline.cli", "transform", "--mapping", "magento", "--output", str(out), "--errors", str(err), str(next(folder.iterdir()))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Products written:  1" in completed.stdout


def assert_clean_options(run: Run) -> None:
    """No option name or value keeps packed syntax or a generic name."""
    for sku, product in run.items.items():
        for attribute in product.get("attributes", []):
            if attribute["type"] != "String":
                continue
            assert not attribute["name"].lower().startswith(("option", "attribute ")), (sku, attribute["name"])
            for value in [attribute["name"], *attribute["values"]]:
                assert not any(mark in value for mark in PACKED), (sku, value)
                assert ", " not in value, (sku, value)
            assert attribute["defaultValue"] in attribute["values"]
        assert all(m["type"] in ("String", "Number") for m in product["metadata"])
        description = product.get("description", "")
        assert "<" not in description and "&nbsp;" not in description and "&amp;" not in description, sku


def test_woocommerce_sample_export(tmp_path):
    folder = _require("woocommerce")
    run = transform(tmp_path, "woocommerce", [folder / "sample_products.csv"])
    assert_nothing_rejected(run)
    assert len(run.items) == 18
    with open(folder / "sample_products.csv", encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    variations = {r["SKU"] for r in rows if r["Type"] == "variation"}
    assert len(variations) == 7 and not variations & set(run.items)
    assert_clean_options(run)

    hoodie = run.attrs("woo-hoodie")
    assert set(hoodie) == {"Color", "Logo"}
    assert sorted(hoodie["Color"]["values"]) == ["Blue", "Green", "Red"]
    assert sorted(hoodie["Logo"]["values"]) == ["No", "Yes"]
    assert run.prices("woo-hoodie")["default"] == {"USD": 45}
    assert run.prices("woo-hoodie")["sale"] == {"USD": 42}
    kept = run.meta("woo-hoodie")["Variation SKUs"]["defaultValue"].split(", ")
    assert set(kept) == {"woo-hoodie-red", "woo-hoodie-green", "woo-hoodie-blue", "woo-hoodie-blue-logo"}
    assert run.items["woo-hoodie"]["tags"] == ["Clothing > Hoodies"]

    vneck = run.attrs("woo-vneck-tee")
    assert sorted(vneck["Color"]["values"]) == ["Blue", "Green", "Red"]
    assert sorted(vneck["Size"]["values"]) == ["Large", "Medium", "Small"]
    assert run.prices("woo-vneck-tee")["default"]["USD"] in (20, 15)
    # The variation priced differently is reported, not averaged or dropped silently.
    assert any(e["line"] == "18" and "per-variant prices" in e["reason"] for e in run.errors)

    assert run.attrs("woo-belt") == {}
    assert run.prices("woo-belt") == {"default": {"USD": 65}, "sale": {"USD": 55}}
    assert "Woo-tshirt-logo" in run.items and "woo-tshirt-logo" not in run.items
    assert run.attrs("Woo-tshirt-logo")["Color"]["values"] == ["Gray"]
    assert run.prices("Woo-tshirt-logo") == {"default": {"USD": 18}}
    assert run.prices("wp-pennant") == {"default": {"USD": 11.05}}
    assert run.prices("logo-collection") == {}
    assert run.meta("woo-hoodie")["Weight (lbs)"] == {"name": "Weight (lbs)", "defaultValue": 1.5, "type": "Number"}
    assert run.meta("woo-vneck-tee")["Weight (lbs)"]["defaultValue"] == 0.5  # written ".5"
    for sku in run.items:
        assert run.meta(sku)["SKU"]["type"] == "String"
    # Only the one unrepresentable price is listed; normal layout rows are not errors.
    assert len(run.errors) == 1


def test_shopify_product_template(tmp_path):
    folder = _require("shopify")
    assert b"\r\n" in (folder / "product_template.csv").read_bytes()
    run = transform(tmp_path, "shopify", [folder / "product_template.csv"])
    assert_nothing_rejected(run)
    assert set(run.items) == {"example-shirt", "example-pants", "example-hat"}
    assert_clean_options(run)

    shirt = run.attrs("example-shirt")
    assert shirt["Color"]["values"] == ["Green", "Blue", "Gray", "Purple"] and shirt["Color"]["defaultValue"] == "Green"
    assert shirt["Size"]["values"] == ["S", "M", "L"] and shirt["Size"]["defaultValue"] == "S"
    assert run.prices("example-shirt")["default"] == {"USD": 25}
    skus = run.meta("example-shirt")["Variant SKUs"]["defaultValue"].split(", ")
    assert len(skus) == 12 and skus[0] == "SRT_COT_111" and skus[-1] == "SRT_COT_433"
    shirt_item = run.items["example-shirt"]
    assert {"Made to Order", "Shirt Tag"} <= set(shirt_item.get("tags", []) + shirt_item.get("keywords", []))
    assert "Apparel & Accessories > Clothing > Clothing Tops > T-Shirts" in shirt_item["tags"]
    assert shirt_item["description"].startswith("This t-shirt is as simple as it gets.")

    pants = run.attrs("example-pants")
    assert pants["Size"]["values"] == ["28", "30", "40"] and pants["Size"]["defaultValue"] == "28"
    assert run.prices("example-pants")["default"] == {"USD": 95}
    assert run.prices("example-pants")["compare-at"] == {"USD": 64.95}
    assert set(run.meta("example-pants")["Variant SKUs"]["defaultValue"].split(", ")) == {"PNT_DEN_285", "PNT_DEN_305", "PNT_DEN_405"}

    assert run.attrs("example-hat") == {}
    assert run.prices("example-hat")["default"] == {"USD": 17.99}
    assert run.prices("example-hat")["compare-at"] == {"USD": 22.99}
    assert run.meta("example-hat")["Variant SKUs"]["defaultValue"] == "HAT_GRY_275"
    # Excel turned the barcodes and MPNs into 3.65275E+11: their digits are gone, so they are left
    # out of the items and each cell is reported; no product is dropped for it.
    assert "E+" not in json.dumps(run.items)
    assert run.errors, "damaged identifiers left out without a report"
    for error in run.errors:
        assert "scientific notation" in error["reason"] and "left out" in error["reason"], error
        assert error["line"] and error["key"] in run.items
    # The image-only row and the continuation rows are not errors.


def test_akeneo_product_and_model_exports(tmp_path):
    folder = _require("akeneo")
    run = transform(tmp_path, "akeneo", [folder / "product.csv", folder / "product_model.csv"])
    assert_nothing_rejected(run)
    assert len(run.items) == 18
    assert {"amor", "brooksblue", "brookspink"} <= set(run.items)
    assert_clean_options(run)
    assert run.prices("AKNTS_BPXS") == {"default": {"EUR": 10, "USD": 14}}
    assert run.items["AKNTS_BPXS"]["name"] == "Akeneo T-Shirt black and purple with short sleeve"
    assert run.items["AKNTS_BPXS"]["tags"] == ["goodies", "tshirts"]
    assert run.prices("OROMUG_DBO") == {"default": {"EUR": 5, "USD": 5}}
    assert run.items["OROMUG_DBO"]["tags"] == ["goodies"]
    assert run.prices("amor") == {"default": {"EUR": 999}}
    assert run.items["amor"]["tags"] == ["master_men_blazers", "supplier_zaro"]
    assert run.prices("brooksblue") == {}
    assert run.meta("AKNTS_BPXS")["SKU"]["type"] == "String"
    # Multi-selects that are not variant axes stay metadata, named after their column.
    assert run.meta("AKNTS_BPXS")["tshirt_style"]["defaultValue"] == "crewneck,short_sleeve"
    # The de_DE and fr_FR texts go to the translations file, keyed by the en_US text.
    by_name = {row["Canonical Name"]: row for row in run.translations}
    assert by_name["Akeneo T-Shirt"]["fr-FR"] == "T-Shirt Akeneo"
    assert by_name["Oro Mug"] == {"Canonical Name": "Oro Mug", "de-DE": "Oro Mug", "fr-FR": "Mug Oro"}
    assert run.errors == []


def test_magento_configurable_with_store_views(tmp_path):
    folder = _require("magento")
    run = transform(tmp_path, "magento", [folder / "import_configurable_for_multiple_store_views.csv"])
    assert_nothing_rejected(run)
    assert list(run.items) == ["Configurable 1"]
    assert_clean_options(run)
    attrs = run.attrs("Configurable 1")
    assert len(attrs) == 1
    (name, axis), = attrs.items()
    assert name in ("test_configurable", "test_configurable_custom_label")
    assert axis["values"] == ["Option 1", "Option 2"] and axis["defaultValue"] == "Option 1"
    assert run.prices("Configurable 1") == {"default": {"USD": 10}}
    children = run.meta("Configurable 1")["Child SKUs"]["defaultValue"].split(", ")
    assert set(children) == {"Configurable 1-Option 1", "Configurable 1-Option 2"}
    (store_view,) = run.errors
    assert store_view["line"] == "5" and "store" in store_view["reason"]
    assert not any("=" in v or "|" in v for v in run.meta_values("Configurable 1"))


def test_prestashop_products_and_combinations(tmp_path):
    folder = _require("prestashop")
    run = transform(tmp_path, "prestashop", [folder / "products_import.csv", folder / "combinations_import.csv"])
    assert_nothing_rejected(run)
    assert len(run.items) == 7
    assert_clean_options(run)
    by_name = {product["name"]: sku for sku, product in run.items.items()}
    nano = by_name["iPod Nano"]
    attrs = run.attrs(nano)
    assert attrs["Color"]["values"] == ["Blue", "Yellow", "Metal", "Black", "Orange", "Pink", "Green", "Purple"]
    assert sorted(attrs["Disk space"]["values"]) == ["16GB", "8GB"]
    assert (attrs["Color"]["defaultValue"], attrs["Disk space"]["defaultValue"]) == ("Yellow", "8GB")
    assert run.prices(nano)["default"] == {"USD": 100}
    meta = run.meta(nano)
    assert meta["EAN13"] == {"name": "EAN13", "defaultValue": "1234567890123", "type": "String"}
    references = meta["Combination references"]["defaultValue"].split(", ")
    assert len(references) == 16 and references[0] == "RP-Nano-Blue-16GB"
    assert meta["Combination EAN13s"]["defaultValue"].startswith("0000080446392")
    assert run.items[nano]["tags"] == ["iPods"] and run.items[nano]["description"] == "New design."

    air = run.attrs(by_name["MacBook Air"])
    assert air["Color"]["values"] == ["Metal"]
    assert air["Disk space"]["values"] == ["80GB Parallel ATA Drive @ 4200 rpm", "Optional 64GB solid-state drive"]
    assert air["ICU"]["values"] == ["1.60GHz Intel Core 2 Duo", "1.80GHz Intel Core 2 Duo"]
    assert [air[a]["defaultValue"] for a in ("Color", "Disk space", "ICU")] == [
        "Metal",
        "80GB Parallel ATA Drive @ 4200 rpm",
        "1.80GHz Intel Core 2 Duo",
    ]
    assert run.prices(by_name["MacBook Air"])["default"] == {"USD": 1500}
    impacts = [e for e in run.errors if e["column"] == "Impact on price"]
    assert {e["value"] for e in impacts if e["file"] == "combinations_import.csv"} >= {"750", "225", "975"}

    touch = run.attrs(by_name["iPod touch"])
    assert touch["Disk space"]["values"] == ["8GB", "16GB", "32GB"] and touch["Disk space"]["defaultValue"] == "8GB"
    assert run.prices(by_name["iPod touch"])["default"] == {"USD": 240}
    for name, price in (("MacBook", 1150), ("Belkin Leather Folio", 25), ("Shure SE210", 125)):
        (sku,) = [s for n, s in by_name.items() if n.startswith(name) and n != "MacBook Air"]
        assert run.attrs(sku) == {} and run.prices(sku)["default"] == {"USD": price}
    # Only the price impacts are listed: combination rows themselves are normal.
    assert {e["column"] for e in run.errors} == {"Impact on price"}


# --- Our own exports of the same formats (other attributes, locales, currencies) --------------


def test_woocommerce_own_export(tmp_path):
    run = transform(tmp_path, "woocommerce", sorted((SAMPLES / "woocommerce").iterdir()))
    assert set(run.items) == {"id:101", "0042-CUSHION", "SET-LOUNGE"}
    chair = run.attrs("id:101")
    assert chair["Fabric"]["values"] == ["Linen", "Velvet", "Wool, boiled"]  # escaped separator
    assert chair["Fabric"]["defaultValue"] == "Velvet"  # the "Attribute 1 default" column
    assert chair["Leg finish"]["defaultValue"] == "Oak"  # the first variation's value
    assert chair["Armrest"]["values"] == ["Yes", "No"]
    assert run.items["id:101"]["tags"] == ["Furniture > Chairs", "Sale"]
    assert run.items["id:101"]["description"] == "Solid oak frame."
    meta = run.meta("id:101")
    assert meta["Width (cm)"]["defaultValue"] == 0.75 and meta["Weight (kg)"]["type"] == "Number"
    assert meta["Variation SKUs"]["defaultValue"] == "LC-LIN-OAK, LC-VEL-WAL"
    assert run.prices("id:101") == {"default": {"USD": 899}, "sale": {"USD": 799}}
    assert run.meta("0042-CUSHION")["In stock"]["defaultValue"] == "false"
    (orphan,) = run.errors
    assert orphan["line"] == "7" and "not in this batch" in orphan["reason"]


def test_shopify_own_export(tmp_path):
    run = transform(tmp_path, "shopify", sorted((SAMPLES / "shopify").iterdir()))
    assert set(run.items) == {"sofa-nova", "gift-card"}
    sofa = run.attrs("sofa-nova")
    assert list(sofa) == ["Material", "Color", "Size"]
    assert sofa["Material"]["values"] == ["Bouclé", "Velvet"]
    assert sofa["Size"]["defaultValue"] == "2-seat"
    assert run.items["sofa-nova"]["description"] == "Modular sofa & chaise"
    assert run.meta("sofa-nova")["Variant Barcodes"]["defaultValue"] == "04006381333931, 04006381333948"
    assert run.prices("sofa-nova")["default"] == {"USD": 1490}
    assert run.attrs("gift-card") == {}
    reported = {(e["line"], e["column"]) for e in run.errors}
    # Line 3 differs in its price and has a compare-at price the first variant has not: both listed.
    assert reported == {("3", "Variant Price"), ("3", "Variant Compare At Price"), ("4", "Variant Price"), ("6", "Price / {*}")}
    assert "compare-at" not in run.prices("sofa-nova")  # never another variant's compare-at price


def test_akeneo_own_export(tmp_path):
    run = transform(tmp_path, "akeneo", sorted((SAMPLES / "akeneo").iterdir()))
    assert set(run.items) == {"desk_atlas", "LAMP-ORBIT", "CHAIR-ALONE"}
    desk = run.attrs("desk_atlas")
    assert desk["size"]["values"] == ["120", "160"] and desk["frame_color"]["values"] == ["black", "white"]
    assert "ean" not in desk
    assert run.prices("desk_atlas") == {"default": {"CHF": 1390.5, "GBP": 1249}}
    meta = run.meta("desk_atlas")
    assert meta["Weight (KILOGRAM)"] == {"name": "Weight (KILOGRAM)", "defaultValue": 32.5, "type": "Number"}
    assert meta["Variant SKUs"]["defaultValue"] == "ATLAS-120-BLK, ATLAS-160-WHT"
    assert meta["Variant EANs"]["defaultValue"] == "0400638133393, 0400638133394"
    assert run.items["desk_atlas"]["description"] == "Height adjustable"  # en_GB: the first declared locale present
    assert run.meta("LAMP-ORBIT")["EAN"]["defaultValue"] == "0000000000017"
    assert run.meta("LAMP-ORBIT")["Enabled"]["defaultValue"] == "false"
    by_name = {row["Canonical Name"]: row for row in run.translations}
    assert by_name["Height adjustable"]["de-CH"] == "Höhenverstellbar" and by_name["Height adjustable"]["it-IT"] == "Regolabile"
    assert by_name["Warm light"]["de-CH"] == "Warmes Licht"


def test_magento_own_export(tmp_path):
    run = transform(tmp_path, "magento", sorted((SAMPLES / "magento").iterdir()))
    assert list(run.items) == ["TEE-RUN"]
    attrs = run.attrs("TEE-RUN")
    assert attrs["Colour"]["values"] == ["Red", "Blue"] and attrs["size"]["values"] == ["S", "M"]
    assert run.prices("TEE-RUN") == {"default": {"USD": 27}, "special": {"USD": 24.5}}  # lowest child price
    assert run.items["TEE-RUN"]["tags"] == ["Default Category / Men / Tops", "Default Category / Sale"]
    assert run.meta("TEE-RUN")["material"]["defaultValue"] == "Polyester"
    assert {(e["line"], e["column"]) for e in run.errors} == {("2", "price"), ("5", "store_view_code")}


def test_prestashop_own_export(tmp_path):
    run = transform(tmp_path, "prestashop", sorted((SAMPLES / "prestashop").iterdir()))
    assert set(run.items) == {"21", "22"}
    attrs = run.attrs("21")
    assert attrs["Size"]["values"] == ["130x170", "150x200"] and attrs["Size"]["defaultValue"] == "150x200"
    assert attrs["Color"]["values"] == ["Ochre", "Slate"]
    meta = run.meta("21")
    assert "Reference" not in meta  # empty "Reference #": the Product ID is the SKU
    assert meta["EAN13"]["defaultValue"] == "0012345678905"
    assert meta["Feature Composition"]["defaultValue"] == "Cotton"
    assert run.meta("22")["Reference"]["defaultValue"] == "VASE-1"
    broken = [e for e in run.errors if "cannot be paired" in e["reason"]]
    assert [e["line"] for e in broken] == ["4"]
    assert [e["value"] for e in run.errors if e["column"] == "Impact on price"] == ["15.000000"]


def test_many_variant_identifiers_continue_under_numbered_keys(tmp_path):
    """400 variant SKUs do not fit one metadata value: they continue under "Variant SKUs (2)", ...
    instead of being cut or getting the product rejected."""
    export = tmp_path / "products_export_1.csv"
    skus = [f"BIG-VARIANT-{i:05d}" for i in range(400)]
    with open(export, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Handle", "Title", "Option1 Name", "Option1 Value", "Variant SKU", "Variant Price"])
        for i, sku in enumerate(skus):
            writer.writerow(["big", "Big" if i == 0 else "", "Size" if i == 0 else "", f"S{i}", sku, "10"])
    run = transform(tmp_path, "shopify", [export])
    meta = run.meta("big")
    parts = [meta["Variant SKUs"]] + [meta[f"Variant SKUs ({n})"] for n in range(2, 10) if f"Variant SKUs ({n})" in meta]
    assert len(parts) > 1 and all(len(p["defaultValue"]) <= 2000 for p in parts)
    assert ", ".join(p["defaultValue"] for p in parts).split(", ") == skus
    assert len(run.attrs("big")["Size"]["values"]) == 400


@pytest.mark.parametrize(
    "system, name, layout",
    [
        ("woocommerce", "wc-product-export-30-11-2026-1764547200000.csv", "WooCommerce product export"),
        ("woocommerce", "sample_products.csv.gz", "WooCommerce product export"),
        ("shopify", "products_export_1.csv", "Shopify product export"),
        ("akeneo", "csv_product_model_export_2026-11-30.csv", "Akeneo product model export"),
        ("akeneo", "Demo CSV product export_2026-11-30_10-15-00.csv", "Akeneo product export"),
        ("akeneo", "product_model.csv", "Akeneo product model export"),
        ("magento", "catalog_product_20261130_101500.csv", "Magento 2 catalog product CSV"),
        ("prestashop", "combinations_import.csv", "PrestaShop combinations"),
        ("prestashop", "products_import.csv", "PrestaShop products"),
    ],
)
def test_real_file_names_find_their_layout(system, name, layout):
    mapping = load_mapping(system)
    assert next(spec.name for spec in mapping.inputs if spec.matches(name)) == layout


def test_a_stamp_in_an_export_name_still_orders_batches():
    names = ["shop_20261201.csv", "products_export_1.csv", "shop_20261130_101500.csv"]
    batches = group_batches(names, load_mapping("shopify"))
    assert [b.files for b in batches] == [["shop_20261130_101500.csv"], ["shop_20261201.csv"], ["products_export_1.csv"]]
    assert "*.csv" in catalog_import.mapping_patterns(load_mapping("shopify"))


def test_akeneo_two_level_variants_roll_up_to_the_root_model(tmp_path):
    """product -> sub-model -> root model: one item, axes from both levels."""
    models = tmp_path / "csv_product_model_export.csv"
    models.write_text("code;parent;family_variant;name;color;price-EUR\nshoe;;shoes_color_size;Runner;;120\nshoe_red;shoe;;;red;\nshoe_blue;shoe;;;blue;\n")
    products = tmp_path / "csv_product_export.csv"
    products.write_text("sku;parent;size;ean\nSH-R-40;shoe_red;40;001\nSH-R-41;shoe_red;41;002\nSH-B-40;shoe_blue;40;003\n")
    run = transform(tmp_path, "akeneo", [products, models])
    assert list(run.items) == ["shoe"]
    attrs = run.attrs("shoe")
    assert (attrs["color"]["values"], attrs["size"]["values"]) == (["red", "blue"], ["40", "41"])
    assert run.meta("shoe")["Variant EANs"]["defaultValue"] == "001, 002, 003"
    assert run.prices("shoe") == {"default": {"EUR": 120}}
    assert run.errors == []


def test_an_over_long_attribute_text_is_listed_not_fatal(tmp_path):
    export = tmp_path / "csv_product_export.csv"
    export.write_text("sku;name;notice\nA;Lamp;" + "x" * 2500 + "\nB;Shade;short\n", encoding="utf-8")
    run = transform(tmp_path, "akeneo", [export])
    assert set(run.items) == {"A", "B"}
    assert "notice" not in run.meta("A") and run.meta("B")["notice"]["defaultValue"] == "short"
    (listed,) = run.errors
    assert (listed["line"], listed["column"]) == ("2", "notice") and "longer than 2000" in listed["reason"]
