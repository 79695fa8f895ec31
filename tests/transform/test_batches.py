"""Batches by date stamp and source classification (pure functions on names)."""

from __future__ import annotations

from datetime import date

import pytest
from threekit_pipeline.transform import Batch, classify, file_stamp, group_batches, load_mapping


@pytest.mark.parametrize(
    "name, expected",
    [
        ("products_20261123.csv", ("20261123", date(2026, 11, 23))),
        ("prices_20261123_101500.csv", ("20261123_101500", date(2026, 11, 23))),
        ("options_20261123101500.xlsx", ("20261123_101500", date(2026, 11, 23))),
        ("products_20261123.csv.gz", ("20261123", date(2026, 11, 23))),
        ("/inbound/catalog/parts_20270101.zip", ("20270101", date(2027, 1, 1))),
        ("catalog_v2_20261123.csv", ("20261123", date(2026, 11, 23))),
        ("products.csv", None),
        ("products_20261123_final.csv", None),  # the stamp must end the name
        ("products_20261323.csv", None),  # not a date
        ("products_20261123_256000.csv", None),  # not a time
        ("products_2026112.csv", None),
        ("products_202611230.csv", None),
    ],
)
def test_file_stamp(name, expected):
    assert file_stamp(name) == expected


def test_group_batches_orders_oldest_first_and_unstamped_last():
    paths = [
        "/in/prices_20261124.csv",
        "/in/zeta.csv",
        "/in/products_20261123_120000.csv",
        "/in/products_20261124.csv",
        "/in/options_20261123.csv",
        "/in/alpha.csv",
        "/in/products_20261123.csv",
        "/in/options_20261123120000.csv",
        "/in/parts_20251231.csv",
    ]
    batches = group_batches(paths, load_mapping("canonical"))
    assert batches == [
        Batch("20251231", date(2025, 12, 31), ["/in/parts_20251231.csv"]),
        Batch("20261123", date(2026, 11, 23), ["/in/options_20261123.csv", "/in/products_20261123.csv"]),
        Batch(
            "20261123_120000",
            date(2026, 11, 23),
            ["/in/options_20261123120000.csv", "/in/products_20261123_120000.csv"],
        ),
        Batch("20261124", date(2026, 11, 24), ["/in/prices_20261124.csv", "/in/products_20261124.csv"]),
        Batch(None, None, ["/in/alpha.csv"]),
        Batch(None, None, ["/in/zeta.csv"]),
    ]


def test_group_batches_is_independent_of_input_order():
    paths = [f"{kind}_2026112{day}.csv" for kind in ("products", "options", "prices") for day in (5, 3, 4)]
    assert group_batches(paths) == group_batches(list(reversed(paths))) == group_batches(sorted(paths))
    assert [b.stamp for b in group_batches(paths)] == ["20261123", "20261124", "20261125"]


def test_batch_to_dict_is_json_ready():
    (batch,) = group_batches(["products_20261123.csv"])
    assert batch.to_dict() == {"stamp": "20261123", "day": "2026-11-23", "files": ["products_20261123.csv"]}


@pytest.mark.parametrize(
    "mapping, name, source",
    [
        ("canonical", "products_20261123.csv", "products"),
        ("canonical", "PRODUCTS_20261123.CSV", "products"),
        ("canonical", "options_20261123.csv.gz", "options"),
        ("canonical", "prices_20261123.xlsx", "prices"),
        ("canonical", "/inbound/catalog/parts_20261123.zip", "parts"),
        ("canonical", "inventory_20261123.csv", None),
        ("canonical", "products_20261123.json", None),
        ("sap_de", "Materialstamm_20261123.csv", "products"),
        ("sap_de", "Konditionen_20261123.csv", "prices"),
        ("sap_de", "Stückliste_20261123.csv", "parts"),
        ("pim_wide", "pim_options_20261123.xlsx", "options"),
        ("pim_wide", "products_20261123.csv", None),
    ],
)
def test_classify(mapping, name, source):
    assert classify(name, load_mapping(mapping)) == source
