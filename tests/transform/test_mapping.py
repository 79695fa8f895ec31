"""Mappings: the shipped ones load; broken ones fail with file, key path and reason."""

from __future__ import annotations

import textwrap

import pytest
from threekit_pipeline.transform import MappingError, available_mappings, load_mapping
from threekit_pipeline.transform.mapping import MAPPINGS_DIR

MINIMAL = """
name: sap
sources:
  prices:
    patterns: ["Konditionen*.csv"]
    columns:
      sku: Materialnummer
      pricebook: Preisliste
      currency: Währung
      price: Betrag
"""


def write_mapping(tmp_path, text: str, name: str = "sap.yaml"):
    folder = tmp_path / "mappings"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_shipped_mappings_load_by_name_and_path():
    assert {"canonical", "sap_de", "pim_wide"} <= set(available_mappings())
    canonical = load_mapping("canonical")
    assert list(canonical.sources) == ["products", "options", "prices", "parts"]
    assert canonical.sources["products"].metadata_prefix == "meta:"
    assert load_mapping(MAPPINGS_DIR / "sap_de.yaml").sources["prices"].thousands == "."
    wide = load_mapping("pim_wide").sources["options"].wide
    assert wide.columns == {"Color": "Color", "Fabric": "Fabric", "Leg Finish": "Leg Finish"}
    assert (wide.value_separator, wide.default_marker) == ("|", "*")


def test_every_shipped_mapping_has_samples():
    for name in available_mappings():
        samples = MAPPINGS_DIR / "samples" / name
        assert samples.is_dir() and any(samples.iterdir()), f"no samples for {name}"


def test_minimal_mapping_gets_documented_defaults(tmp_path):
    mapping = load_mapping(write_mapping(tmp_path, MINIMAL))
    prices = mapping.sources["prices"]
    assert (prices.separator, prices.encoding, prices.decimal, prices.max_error_ratio) == (None, None, "auto", 0.05)
    assert mapping.max_length("name") == 255 and mapping.max_length("description") == 2000


@pytest.mark.parametrize(
    "change, message",
    [
        (("      price: Betrag\n", ""), "sources.prices.columns.price: required column mapping missing"),
        (("      sku: Materialnummer\n", "      sku: Materialnummer\n      colour: Farbe\n"), "sources.prices.columns.colour: unknown field"),
        (('    patterns: ["Konditionen*.csv"]\n', ""), "sources.prices.patterns: required"),
        (("  prices:\n", "  prizes:\n"), "sources.prizes: unknown source"),
        (("    columns:\n", "    separator: ':'\n    columns:\n"), "sources.prices.separator: must be auto or one of"),
        (("    columns:\n", "    encoding: klingon\n    columns:\n"), "sources.prices.encoding: unknown encoding 'klingon'"),
        (("    columns:\n", "    thousands: '.'\n    columns:\n"), "sources.prices.decimal: must be '.' or ','"),
        (("    columns:\n", "    max_error_ratio: 1.5\n    columns:\n"), "sources.prices.max_error_ratio: must be a number between 0 and 1"),
        (("    columns:\n", "    metadata: {prefix: 'meta:'}\n    columns:\n"), "sources.prices.metadata: only the products source"),
        (("    columns:\n", "    wide: {columns: [Color]}\n    columns:\n"), "sources.prices.wide: only the options source"),
        (("    columns:\n", "    colums:\n"), "sources.prices.colums: unknown key"),
        (("name: sap\n", "name: sap\nmax_lengths: {name: 0}\n"), "max_lengths.name: must be a positive integer"),
    ],
)
def test_mapping_errors_name_file_key_and_reason(tmp_path, change, message):
    old, new = change
    assert old in MINIMAL
    path = write_mapping(tmp_path, MINIMAL.replace(old, new, 1))
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_the_documented_example_message(tmp_path):
    path = write_mapping(tmp_path, MINIMAL.replace("      price: Betrag\n", ""))
    with pytest.raises(MappingError, match=r"sap\.yaml: sources\.prices\.columns\.price: required column mapping missing$"):
        load_mapping(path)


def test_constant_satisfies_a_required_field(tmp_path):
    text = MINIMAL.replace("      pricebook: Preisliste\n", "") + "    constants:\n      pricebook: retail-eu\n"
    mapping = load_mapping(write_mapping(tmp_path, text))
    assert mapping.sources["prices"].constants == {"pricebook": "retail-eu"}


def test_constant_and_column_for_the_same_field_is_an_error(tmp_path):
    text = MINIMAL + "    constants:\n      pricebook: retail-eu\n"
    with pytest.raises(MappingError, match=r"sources\.prices\.constants\.pricebook: field is also mapped in columns"):
        load_mapping(write_mapping(tmp_path, text))


def test_yaml_booleans_in_value_maps_mean_their_text(tmp_path):
    text = """
    sources:
      options:
        patterns: [Merkmale*.csv]
        columns: {sku: Material, attribute: Merkmal, value: Wert, default: Standard}
        value_maps:
          default: {yes: "true", no: "false", J: "true"}
    """
    mapping = load_mapping(write_mapping(tmp_path, text))
    assert mapping.sources["options"].value_maps["default"] == {"true": "true", "false": "false", "J": "true"}


def test_invalid_yaml_reports_the_position(tmp_path):
    path = write_mapping(tmp_path, "sources:\n  prices: [unclosed\n")
    with pytest.raises(MappingError, match=r"invalid YAML \(line \d+, column \d+\)"):
        load_mapping(path)


def test_unknown_mapping_name_lists_the_shipped_ones():
    with pytest.raises(MappingError, match=r"mapping file not found \(shipped mappings: .*canonical"):
        load_mapping("no_such_layout")


def test_wide_matrix_needs_only_the_sku_column(tmp_path):
    text = """
    sources:
      options:
        patterns: [pim*.csv]
        columns: {sku: SKU}
        wide: {columns: {Colour: Color}, value_separator: "|", default_marker: "*"}
    """
    wide = load_mapping(write_mapping(tmp_path, text)).sources["options"].wide
    assert wide.columns == {"Colour": "Color"}


def test_wide_marker_must_differ_from_separator(tmp_path):
    text = """
    sources:
      options:
        patterns: [pim*.csv]
        columns: {sku: SKU}
        wide: {columns: [Color], value_separator: "|", default_marker: "|"}
    """
    with pytest.raises(MappingError, match=r"sources\.options\.wide\.default_marker: must differ from value_separator"):
        load_mapping(write_mapping(tmp_path, text))


def test_reference_example_in_the_readme_is_a_valid_mapping():
    readme = (MAPPINGS_DIR / "README.md").read_text(encoding="utf-8")
    (block,) = [b.split("\n", 1)[1] for b in readme.split("```")[1::2] if b.startswith("yaml\n")]
    import yaml
    from threekit_pipeline.transform.mapping import parse_mapping

    mapping = parse_mapping(yaml.safe_load(block), label="README.md")
    assert mapping.sources["products"].metadata_types == {"Gewicht": "Number"}
    assert mapping.sources["prices"].value_maps["currency"] == {"€": "EUR"}
    assert mapping.sources["options"].wide.default_marker == "*"
