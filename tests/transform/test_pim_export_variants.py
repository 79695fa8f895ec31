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
    assert run.prices("0042") == {"default": {"USD": 24}, "sale": {"USD": 19}}
    assert run.meta("0042")["Weight (lbs)"] == {"name": "Weight (lbs)", "defaultValue": 1.5, "type": "Number"}
    assert run.prices("id:204") == {"default": {"USD": 4.5}}
