"""Translation CSV validation: locales normalised, bad columns and rows reported, clean UTF-8 output."""

from __future__ import annotations

import csv

import pytest
from threekit_pipeline.transform import validate_translations_csv
from threekit_pipeline.transform.translations import normalise_locale


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def read_errors(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(
    "header, locale",
    [
        ("en", "en"),
        ("FR", "fr"),
        ("de-CH", "de-CH"),
        ("de_ch", "de-CH"),
        ("pt_BR", "pt-BR"),
        ("zh_hant_tw", "zh-Hant-TW"),
        ("es-419", "es-419"),
        (" it ", "it"),
        ("French", None),
        ("en-", None),
        ("e", None),
        ("pt_BRA", None),
        ("", None),
    ],
)
def test_normalise_locale(header, locale):
    assert normalise_locale(header) == locale


def test_clean_file_and_errors(tmp_path):
    source = tmp_path / "translations_20261123.csv"
    source.write_bytes(
        (
            "Canonical Name;en;fr;pt_BR;Language;PT-br\n"
            "Sofa;Sofa;Canapé;Sofá;x;y\n"
            ";Empty;Vide;Vazio;x;y\n"
            "Chair;Chair;Chaise;Cadeira;x;y\n"
            "Sofa;Sofa 2;Canapé 2;Sofá 2;x;y\n"
            "Bell;Bell\x07;Cloche;Sino;x;y\n"
        ).encode("cp1252")
    )
    result = validate_translations_csv(source, clean_path=tmp_path / "clean.csv", errors_path=tmp_path / "errors.csv")
    assert result.ok and result.file_error == ""
    assert (result.rows, result.valid_rows, result.rows_rejected) == (5, 2, 3)
    assert result.locales == ["en", "fr", "pt-BR"]
    assert [c["column"] for c in result.rejected_columns] == ["Language", "PT-br"]
    assert read_csv(tmp_path / "clean.csv") == [
        ["Canonical Name", "en", "fr", "pt-BR"],
        ["Sofa", "Sofa", "Canapé", "Sofá"],
        ["Chair", "Chair", "Chaise", "Cadeira"],
    ]
    assert (tmp_path / "clean.csv").read_bytes().startswith(b'"Canonical Name","en","fr","pt-BR"\n')
    errors = [(e["line"], e["column"], e["reason"]) for e in read_errors(tmp_path / "errors.csv")]
    assert errors == [
        ("1", "Language", "column header is not a locale code (e.g. en, fr, de-CH, pt-BR); column left out"),
        ("1", "PT-br", "locale pt-BR appears more than once; column left out"),
        ("3", "Canonical Name", "empty key (Canonical Name)"),
        ("5", "Canonical Name", "duplicate key (first occurrence kept, line 2)"),
        ("6", "en", "contains control characters"),
    ]


def test_missing_key_column_rejects_the_file(tmp_path):
    source = tmp_path / "translations.csv"
    source.write_text("Name,en,fr\nSofa,Sofa,Canapé\n", encoding="utf-8")
    stale = tmp_path / "translations.clean.csv"
    stale.write_text("old", encoding="utf-8")
    result = validate_translations_csv(source)
    assert not result.ok and result.clean_path is None
    assert result.file_error == "required column 'Canonical Name' missing; found 'Name', 'en', 'fr'"
    assert not stale.exists()
    assert read_errors(result.errors_path)[0]["reason"] == result.file_error


def test_no_locale_column_rejects_the_file(tmp_path):
    source = tmp_path / "translations.csv"
    source.write_text("Canonical Name,Deutsch\nSofa,Sofa\n", encoding="utf-8")
    result = validate_translations_csv(source)
    assert result.status == "rejected"
    assert result.reason == "no locale column (headers such as en, fr, de-CH)"


def test_error_ratio_when_requested(tmp_path):
    source = tmp_path / "translations.csv"
    source.write_text("Canonical Name,en\nA,a\n,b\nC,c\nC,d\n", encoding="utf-8")
    assert validate_translations_csv(source).ok
    result = validate_translations_csv(source, max_error_ratio=0.25)
    assert not result.ok
    assert result.reason == "too many bad rows: 2 of 4 (50.0%) rejected, above the limit of 25.0%"
    reasons = [e["reason"] for e in read_errors(result.errors_path)]
    assert reasons[0] == result.reason and len(reasons) == 3


def test_utf16_translations_are_written_back_as_utf8(tmp_path):
    source = tmp_path / "translations.csv"
    source.write_bytes('"Canonical Name"\t"ja"\n"Sofa"\t"ソファ"\n'.encode("utf-16"))
    result = validate_translations_csv(source)
    assert result.ok
    assert (tmp_path / "translations.clean.csv").read_text(encoding="utf-8") == '"Canonical Name","ja"\n"Sofa","ソファ"\n'
