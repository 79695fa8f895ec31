"""Other realistic exports of the five shipped formats (other attribute sets, locales,
currencies, optional columns and file names) through the shipped mappings.

Each fixture under ``tests/data/pim/<system>/`` is written the way the system writes its
export; the assertions are the all-systems rules of the PIM exports case: one item per
product, real option names and split values, defaults, exact prices never mixed with
another variant's, identifiers as written, nothing dropped silently.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_pim_exports import PACKED, Run, assert_nothing_rejected, transform

DATA = Path(__file__).resolve().parents[1] / "data" / "pim"


def assert_clean_options(run: Run, allow_commas: set[str] = frozenset()) -> None:
    """No option name or value keeps packed syntax; defaults are values; metadata typed."""
    for sku, product in run.items.items():
        for attribute in product.get("attributes", []):
            if attribute["type"] != "String":
                continue
            assert not attribute["name"].lower().startswith(("option", "attribute ")), (sku, attribute["name"])
            for value in [attribute["name"], *attribute["values"]]:
                assert not any(mark in value for mark in PACKED), (sku, value)
                assert ", " not in value or value in allow_commas, (sku, value)
                assert value == value.strip() and value, (sku, value)
            assert attribute["defaultValue"] in attribute["values"]
        assert all(m["type"] in ("String", "Number") for m in product["metadata"])
        description = product.get("description", "")
        assert "<" not in description and "&nbsp;" not in description and "&amp;" not in description, sku


# --- WooCommerce --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "wc-product-export-1-12-2026-1764547200000.csv",  # a shop with "." as decimal separator
        "wc-product-export-2-12-2026-1764633600000.csv",  # the same shop set to "," ("1299,99")
    ],
)
def test_woocommerce_four_attributes_defaults_and_shop_decimals(tmp_path, name):
    run = transform(tmp_path, "woocommerce", [DATA / "woocommerce" / name])
    assert_nothing_rejected(run)
    assert_clean_options(run, allow_commas={"Linen, washed"})  # an escaped "\\," is part of the value
    # The product without SKU is an item under its ID; variations are not items.
    assert set(run.items) == {"00777-DESK", "id:204", "0042"}
    desk = run.attrs("00777-DESK")
    assert list(desk) == ["Color", "Width", "Finish", "Cable tray"]
    assert desk["Width"]["values"] == ["120 cm", "160 cm"] and desk["Width"]["defaultValue"] == "120 cm"
    assert desk["Color"]["defaultValue"] == "White" and desk["Cable tray"]["defaultValue"] == "No"
    # The first variation's regular price; the other variation's sale price is not mixed in.
    assert run.prices("00777-DESK") == {"default": {"USD": 1299.99}}
    listed = {(e["line"], e["column"]) for e in run.errors}
    assert listed == {("4", "Regular price"), ("4", "Sale price")}
    assert run.items["00777-DESK"]["name"] == 'Desk "Atlas" 30"'
    assert run.items["00777-DESK"]["description"] == 'Oak desk, 30" deep.'
    assert run.items["00777-DESK"]["tags"] == ["Furniture > Desks", "Furniture > Office > Desks"]
    meta = run.meta("00777-DESK")
    assert meta["GTIN"] == {"name": "GTIN", "defaultValue": "0012345678905", "type": "String"}
    assert meta["Variation GTINs"]["defaultValue"] == "00012345678912"
    assert meta["Variation SKUs"]["defaultValue"] == "00777-DESK-B120, 00777-DESK-W160"
    cushion = run.attrs("0042")
    assert cushion["Material"]["values"] == ["Linen, washed", "Cotton"] and cushion["Material"]["defaultValue"] == "Linen, washed"
    assert run.items["0042"]["name"] == 'Cushion, "Cloud"'
    assert run.items["0042"]["tags"] == ["Home & Garden > Decor"]  # term names are stored escaped
    assert run.prices("0042") == {"default": {"USD": 24}, "sale": {"USD": 19}}
    assert run.meta("0042")["Weight (lbs)"] == {"name": "Weight (lbs)", "defaultValue": 1.5, "type": "Number"}
    assert run.prices("id:204") == {"default": {"USD": 4.5}}


# --- Shopify --------------------------------------------------------------------------------------


def test_shopify_three_options_crlf_bom_and_optional_columns(tmp_path):
    export = DATA / "shopify" / "products_export_1.csv"
    assert export.read_bytes().startswith(b"\xef\xbb\xbf") and b"\r\n" in export.read_bytes()
    run = transform(tmp_path, "shopify", [export])
    assert_nothing_rejected(run)
    assert_clean_options(run, allow_commas={"Sand, light"})
    assert set(run.items) == {"trail-runner", "gift-card", "socks"}
    shoe = run.attrs("trail-runner")
    assert list(shoe) == ["Color", "Size", "Width"]
    assert shoe["Color"]["values"] == ["Black", "Sand, light"] and shoe["Width"]["values"] == ["Regular", "Wide"]
    assert run.items["trail-runner"]["name"] == 'Trail Runner "Pro"'
    assert run.items["trail-runner"]["description"] == "Grip & go \u2014 all\u2011terrain"
    assert run.items["trail-runner"]["tags"] == ["Apparel & Accessories > Shoes"]
    assert run.prices("trail-runner") == {"default": {"USD": 1299}, "compare-at": {"USD": 1499}}
    meta = run.meta("trail-runner")
    assert meta["Variant SKUs"]["defaultValue"] == "0099-TR-BK-42-R, 0099-TR-BK-43-W, 0099-TR-SD-42-R"
    assert meta["Variant Barcodes"]["defaultValue"] == "0012345678905, 0012345678912, 0012345678929"
    assert meta["Weight (g)"] == {"name": "Weight (g)", "defaultValue": 850, "type": "Number"}
    assert meta["Vendor"]["defaultValue"] == "Acme, Inc."
    assert run.attrs("socks") == {} and run.meta("socks")["Variant SKUs"]["defaultValue"] == "000123"
    assert run.attrs("gift-card")["Denominations"]["values"] == ["$25", "$50"]
    assert [(e["line"], e["column"]) for e in run.errors] == [("7", "Variant Price")]


def test_shopify_older_export_with_standard_and_custom_product_type(tmp_path):
    """Exports before "Product Category" name the taxonomy path "Standard Product Type"."""
    run = transform(tmp_path, "shopify", [DATA / "shopify" / "products_export_2019.csv"])
    assert_nothing_rejected(run)
    assert run.items["wool-throw"]["tags"] == ["Home & Garden > Linens & Bedding > Bedding > Blankets"]
    assert run.meta("wool-throw")["Product Type"]["defaultValue"] == "Throws"
    assert run.meta("wool-throw")["Variant Barcodes"]["defaultValue"] == "04006381333931, 04006381333948"
    assert run.prices("wool-throw") == {"default": {"USD": 89}, "cost": {"USD": 30}}
    assert run.errors == []


# --- Akeneo ---------------------------------------------------------------------------------------


def test_akeneo_job_label_names_and_decimal_comma(tmp_path):
    """Files named after the job label ("Demo CSV product model export_<date>.csv"), written by a
    job set to the decimal comma, German texts beside the English ones."""
    files = sorted((DATA / "akeneo").iterdir())
    run = transform(tmp_path, "akeneo", files)
    assert_nothing_rejected(run)
    assert_clean_options(run)
    assert set(run.items) == {"jacket_alps", "0815"}  # the variants roll up into their model
    jacket = run.attrs("jacket_alps")
    assert (jacket["color"]["values"], jacket["size"]["values"]) == (["red", "blue"], ["s", "m"])
    assert run.prices("jacket_alps") == {"default": {"EUR": 1299.5, "CHF": 1349}}
    assert run.items["jacket_alps"]["name"] == 'Alps Jacket "Storm"'
    assert run.items["jacket_alps"]["description"] == "Waterproof & breathable"
    meta = run.meta("jacket_alps")
    assert meta["Weight (KILOGRAM)"]["defaultValue"] == 0.85
    assert meta["Variant EANs"]["defaultValue"] == "04006381333931, 04006381333948, 04006381333955"
    assert run.prices("0815") == {"default": {"EUR": 24.9}}
    assert run.meta("0815")["EAN"] == {"name": "EAN", "defaultValue": "00012345678905", "type": "String"}
    assert run.items["0815"]["tags"] == ["accessories", "sale"]
    assert run.errors == []
    by_name = {row["Canonical Name"]: row for row in run.translations}
    assert by_name["Waterproof & breathable"]["de-DE"] == "Wasserdicht & atmungsaktiv"
    assert by_name["Cap"]["de-DE"] == "Mütze"


def test_akeneo_model_export_under_a_label_of_its_own(tmp_path):
    """A product model export whose job label does not say "product model" is still read by
    its "code" column."""
    models = tmp_path / "Jackets_2026-12-01.csv"
    models.write_bytes((DATA / "akeneo" / "Demo CSV product model export_2026-12-01_08-30-12.csv").read_bytes())
    run = transform(tmp_path, "akeneo", [models, DATA / "akeneo" / "Demo CSV product export_2026-12-01_08-30-12.csv"])
    assert_nothing_rejected(run)
    assert set(run.items) == {"jacket_alps", "0815"} and run.errors == []
    assert list(run.attrs("jacket_alps")) == ["color", "size"]


# --- Magento 2 ------------------------------------------------------------------------------------


def test_magento_full_export_layout_two_axes_store_views_and_grouped(tmp_path):
    run = transform(tmp_path, "magento", [DATA / "magento" / "catalog_product_20261201_083012.csv"])
    assert_nothing_rejected(run)
    assert_clean_options(run)
    assert set(run.items) == {"MJ-007", "000123", "GIFT-SET"}  # the child simples are not items
    attrs = run.attrs("MJ-007")
    assert list(attrs) == ["Colour", "Size"]  # the labels of configurable_variation_labels
    assert attrs["Colour"]["values"] == ["Black", "Navy"] and attrs["Size"]["values"] == ["S", "M"]
    # No price of its own: the lowest child price, and the special price of that same child.
    assert run.prices("MJ-007") == {"default": {"USD": 1249}, "special": {"USD": 1199}}
    jacket = run.items["MJ-007"]
    assert jacket["name"] == 'Storm Jacket "MJ", insulated'
    assert jacket["description"] == "Wind & water resistant. Hood"
    assert jacket["tags"] == ["Default Category / Men / Jackets", 'Default Category / Collections / Winter "Storm" Edition']
    assert jacket["keywords"] == ["jacket", "storm"]  # "meta_keywords", the export's column
    meta = run.meta("MJ-007")
    assert meta["Child SKUs"]["defaultValue"] == "MJ-007-S-Black, MJ-007-M-Black, MJ-007-S-Navy"
    assert meta["gender"]["defaultValue"] == "Men" and "color" not in meta
    assert run.meta("000123")["SKU"]["type"] == "String" and run.prices("000123") == {"default": {"USD": 12.5}}
    assert run.meta("GIFT-SET")["Associated SKUs"]["defaultValue"] == "000123=1.0000,MJ-007-S-Black=1.0000"
    assert "Pricing" not in [a["type"] for a in run.items["GIFT-SET"].get("attributes", [])]
    store_views = sorted(e["line"] for e in run.errors if e["column"] == "store_view_code")
    assert store_views == ["5", "7"]
    assert sorted(e["line"] for e in run.errors if e["column"] == "price") == ["2", "3"]


# --- PrestaShop -----------------------------------------------------------------------------------


def test_prestashop_four_attributes_and_decimal_comma(tmp_path):
    """Full import layout, four attribute groups, amounts written with "," (which PrestaShop's
    import reads as the decimal point), a product without Product ID."""
    files = sorted((DATA / "prestashop").iterdir())
    run = transform(tmp_path, "prestashop", files)
    assert_nothing_rejected(run)
    assert_clean_options(run)
    assert set(run.items) == {"31", "32", "LAMP-NEW"}
    chair = run.attrs("31")
    assert list(chair) == ["Fabric", "Color", "Leg finish", "Armrest"]
    assert chair["Color"]["values"] == ["Grey", "Blue", "Brown"]
    # The combination flagged default.
    assert [chair[n]["defaultValue"] for n in chair] == ["Wool", "Blue", "Black oak", "No"]
    assert run.prices("31") == {"default": {"USD": 1299.5}, "wholesale": {"USD": 600}}
    assert run.prices("32") == {"default": {"USD": 19.9}} and run.prices("LAMP-NEW") == {"default": {"USD": 45}}
    assert run.items["31"]["name"] == 'Chair "Oslo", oak'
    assert run.items["31"]["description"] == "Solid oak & wool."
    meta = run.meta("31")
    assert meta["Width"]["defaultValue"] == 45.5 and meta["Weight"]["defaultValue"] == 7.2
    assert meta["EAN13"] == {"name": "EAN13", "defaultValue": "0012345678905", "type": "String"}
    assert meta["Combination EAN13s"]["defaultValue"] == "0012345678912, 0012345678929"
    assert run.meta("32")["Reference"]["defaultValue"] == "00POSTER"
    assert run.meta("32")["Combination references"]["defaultValue"] == "00POSTER-50, 00POSTER-70"
    # Only the non-zero impacts ("0,000000" is zero) are listed.
    assert [(e["line"], e["value"]) for e in run.errors] == [("3", "50,000000"), ("4", "200,000000")]


def test_akeneo_variant_level_identifiers_are_not_axes(tmp_path):
    """Variant-level supplier references, ERP ids and stock differ per variant like an axis;
    they stay metadata, and only the real axis becomes an option."""
    run = transform(tmp_path, "akeneo", sorted((DATA / "akeneo_variant_ids").iterdir()))
    assert_nothing_rejected(run)
    assert list(run.attrs("boot")) == ["size"]
    meta = run.meta("boot")
    assert meta["supplier_reference"]["defaultValue"] == "SUP-40, SUP-41"
    assert meta["erp_id"]["defaultValue"] == "9001, 9002" and meta["stock_quantity"]["defaultValue"] == "3, 5"
    assert meta["Variant EANs"]["defaultValue"] == "001, 002"
    assert run.errors == []


def test_shopify_market_compare_at_prices_are_listed_and_multiline_html(tmp_path):
    """Market columns ("Price / United States", "Compare At Price / United States") are in a
    currency the export does not name: listed, never dropped silently; Body (HTML) spans lines."""
    run = transform(tmp_path, "shopify", [DATA / "shopify" / "products_export_markets.csv"])
    assert_nothing_rejected(run)
    assert run.prices("lamp") == {"default": {"USD": 249}}
    assert "<" not in run.items["lamp"]["description"] and "&amp;" not in run.items["lamp"]["description"]
    listed = [(e["line"], e["column"], e["value"]) for e in run.errors]
    assert listed == [("2", "Price / {*}", "259.00"), ("2", "Compare At Price / {*}", "299.00"), ("6", "Price / {*}", "259.00")]


def test_prestashop_combinations_keyed_by_product_reference(tmp_path):
    """An import file set to "use product reference as key": combinations name their product
    by "Product Reference"; they still roll up into the product (keyed by its Product ID)."""
    run = transform(tmp_path, "prestashop", sorted((DATA / "prestashop_by_reference").iterdir()))
    assert_nothing_rejected(run)
    assert list(run.items) == ["41"]
    assert run.attrs("41")["Size"]["values"] == ["S", "L"] and run.attrs("41")["Size"]["defaultValue"] == "S"
    assert run.meta("41")["Combination references"]["defaultValue"] == "VASE-41-S, VASE-41-L"
    assert run.errors == []


def test_magento_configurables_exported_without_their_children(tmp_path):
    """An export filtered to configurables: the children are not rows of the file, but
    configurable_variations still names them; their SKUs are kept, not dropped."""
    run = transform(tmp_path, "magento", [DATA / "magento" / "export_catalog_product_configurables_only.csv"])
    assert_nothing_rejected(run)
    assert run.meta("CHAIR-9")["Child SKUs"]["defaultValue"] == "CHAIR-9-RED, CHAIR-9-BLU"
    attrs = run.attrs("CHAIR-9")
    assert attrs["color"]["values"] == ["Red", "Blue"] and attrs["material"]["values"] == ["Oak", "Ash"]
    assert "Pricing" not in [a["type"] for a in run.items["CHAIR-9"]["attributes"]]  # no price in the file
    assert run.errors == []


def test_woocommerce_formula_guard_apostrophe_is_removed(tmp_path):
    """The exporter writes "'-3" for a cell starting with = + - @; the value is "-3"."""
    export = DATA / "woocommerce" / "wc-product-export-3-12-2026-1764720000000.csv"
    run = transform(tmp_path, "woocommerce", [export])
    assert_nothing_rejected(run)
    assert run.items["B-1"]["name"] == "-20% Bundle" and run.items["B-2"]["name"] == "Plain's"
    assert run.meta("B-1")["Stock"] == {"name": "Stock", "defaultValue": -3, "type": "Number"}
    assert run.errors == []


def test_prestashop_back_office_catalog_export(tmp_path):
    """Catalog > Products > Export: "ID", "Name", "Reference", "Category", "Price (tax excl.)"."""
    run = transform(tmp_path, "prestashop", sorted((DATA / "prestashop_catalog").iterdir()))
    assert_nothing_rejected(run)
    assert set(run.items) == {"1", "19"}
    assert run.items["1"]["name"] == "Hummingbird printed t-shirt" and run.items["1"]["tags"] == ["Men"]
    assert run.prices("1") == {"default": {"USD": 23.9}, "tax-included": {"USD": 28.68}}
    assert run.meta("1")["Reference"]["defaultValue"] == "demo_1" and run.meta("1")["Active"]["defaultValue"] == "true"
    assert run.prices("19")["default"] == {"USD": 13.9}
    assert run.errors == []
