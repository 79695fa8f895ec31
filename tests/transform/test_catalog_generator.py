"""The sample catalog generator: deterministic, the requested sizes, and clean canonical input."""

from __future__ import annotations

import csv

from threekit_pipeline.samples.catalog import generate_catalog
from threekit_pipeline.transform import load_mapping, transform_files, validate_translations_csv


def count_rows(path) -> int:
    with open(path, encoding="utf-8", newline="") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


def test_generator_is_deterministic_by_seed(tmp_path):
    first = generate_catalog(tmp_path / "a", products=120, seed=3)
    second = generate_catalog(tmp_path / "b", products=120, seed=3)
    other = generate_catalog(tmp_path / "c", products=120, seed=4)
    assert sorted(first) == ["options", "parts", "prices", "products", "translations"]
    for name in first:
        assert first[name].read_bytes() == second[name].read_bytes(), name
    assert first["options"].read_bytes() != other["options"].read_bytes()
    assert first["products"].name == "products_20261123.csv"


def test_generator_sizes(tmp_path):
    files = generate_catalog(
        tmp_path, products=300, options_per_product=2.5, prices_per_product=3, parts_ratio=0.2, stamp="20270102", locales=()
    )
    assert "translations" not in files
    assert count_rows(files["products"]) == 300
    assert count_rows(files["options"]) == 750
    assert count_rows(files["prices"]) == 900
    assert 20 <= len({row[0] for row in csv.reader(open(files["parts"], encoding="utf-8"))}) - 1 <= 100
    assert files["prices"].name == "prices_20270102.csv"


def test_generated_catalog_transforms_without_rejections(tmp_path):
    files = generate_catalog(tmp_path / "in", products=200, locales=("en", "fr", "de-CH"))
    catalog = [files[name] for name in ("products", "options", "prices", "parts")]
    result = transform_files(load_mapping("canonical"), catalog, tmp_path / "out.jsonl")
    assert result.ok and result.rows_rejected == 0
    assert result.products_written == 200
    assert result.rows_read == sum(count_rows(path) for path in catalog)
    translations = validate_translations_csv(files["translations"])
    assert translations.ok and translations.rows_rejected == 0
    assert translations.locales == ["en", "fr", "de-CH"]
