"""Deterministic furniture catalogs in the canonical layout, for demos, tests and benchmarks.

:func:`generate_catalog` writes ``products_<stamp>.csv``, ``options_<stamp>.csv``,
``prices_<stamp>.csv``, ``parts_<stamp>.csv`` and ``translations_<stamp>.csv``: sofas,
armchairs, chairs, tables, beds and shelves with colours, fabrics and leg finishes, two
pricebooks (EU Retail in EUR, US Retail in USD; more rows per product add trade and UK
pricebooks), part references to ``#tag``s and asset ids, ``meta:`` columns, and a
translations CSV (``Canonical Name`` plus one column per locale). The same arguments
always produce byte-identical files.
"""

from __future__ import annotations

import csv
import random
import uuid
from collections.abc import Callable
from pathlib import Path

_COLLECTIONS = ("Oslo", "Bergen", "Turku", "Lund", "Aarhus", "Malmo", "Tampere", "Odense", "Uppsala", "Espoo")
_DESIGNERS = ("Anna Berg", "Erik Sand", "Liv Dahl", "Jonas Ek", "Mette Holm", "Sofie Lind")

# kind -> (SKU prefix, keywords, tag, weight range kg, option attributes, part attribute)
_KINDS = {
    "Sofa": ("SOFA", ("sofa", "living room"), "sofas", (35, 90), ("Color", "Fabric", "Leg Finish"), "Legs"),
    "Armchair": ("ARM", ("armchair", "living room"), "armchairs", (12, 30), ("Color", "Fabric", "Leg Finish"), "Legs"),
    "Chair": ("CHAIR", ("chair", "dining"), "chairs", (4, 9), ("Color", "Seat", "Frame"), "Seat Pad"),
    "Table": ("TABLE", ("table", "dining"), "tables", (20, 70), ("Top", "Leg Finish", "Size"), "Extension Leaf"),
    "Bed": ("BED", ("bed", "bedroom"), "beds", (40, 110), ("Fabric", "Size", "Leg Finish"), "Headboard"),
    "Shelf": ("SHELF", ("shelf", "storage"), "storage", (15, 45), ("Finish", "Size", "Color"), "Doors"),
}
_VALUES = {
    "Color": ("Sand", "Slate", "Moss", "Charcoal", "Ivory", "Rust", "Ocean", "Blush"),
    "Fabric": ("Linen", "Velvet", "Boucle", "Wool", "Leather", "Cotton"),
    "Leg Finish": ("Natural Oak", "Black Oak", "Walnut", "Brass", "Chrome"),
    "Seat": ("Upholstered", "Solid Wood", "Woven Cord"),
    "Frame": ("Natural Oak", "Black Oak", "Walnut", "Black Steel"),
    "Top": ("Oak Veneer", "Walnut Veneer", "Marble", "Ceramic", "Glass"),
    "Size": ("Small", "Medium", "Large", "Extra Large"),
    "Finish": ("White Lacquer", "Natural Oak", "Walnut", "Black Ash"),
}
_TRANSLATIONS = {
    "fr": {
        "Color": "Couleur", "Fabric": "Tissu", "Leg Finish": "Finition des pieds", "Seat": "Assise",
        "Frame": "Structure", "Top": "Plateau", "Size": "Taille", "Finish": "Finition", "Sand": "Sable",
        "Slate": "Ardoise", "Moss": "Mousse", "Charcoal": "Anthracite", "Ivory": "Ivoire", "Rust": "Rouille",
        "Ocean": "Océan", "Blush": "Rose poudré", "Linen": "Lin", "Velvet": "Velours", "Wool": "Laine",
        "Leather": "Cuir", "Cotton": "Coton", "Walnut": "Noyer", "Brass": "Laiton", "Chrome": "Chrome",
        "Small": "Petit", "Medium": "Moyen", "Large": "Grand", "Extra Large": "Très grand",
        "Marble": "Marbre", "Ceramic": "Céramique", "Glass": "Verre", "Sofa": "Canapé",
        "Armchair": "Fauteuil", "Chair": "Chaise", "Table": "Table", "Bed": "Lit", "Shelf": "Étagère",
    },
    "de": {
        "Color": "Farbe", "Fabric": "Stoff", "Leg Finish": "Beinoberfläche", "Seat": "Sitz", "Frame": "Gestell",
        "Top": "Tischplatte", "Size": "Größe", "Finish": "Oberfläche", "Sand": "Sand", "Slate": "Schiefer",
        "Moss": "Moos", "Charcoal": "Anthrazit", "Ivory": "Elfenbein", "Rust": "Rost", "Ocean": "Ozean",
        "Blush": "Puder", "Linen": "Leinen", "Velvet": "Samt", "Wool": "Wolle", "Leather": "Leder",
        "Cotton": "Baumwolle", "Walnut": "Nussbaum", "Brass": "Messing", "Chrome": "Chrom", "Small": "Klein",
        "Medium": "Mittel", "Large": "Groß", "Extra Large": "Extra groß", "Marble": "Marmor",
        "Ceramic": "Keramik", "Glass": "Glas", "Sofa": "Sofa", "Armchair": "Sessel", "Chair": "Stuhl",
        "Table": "Tisch", "Bed": "Bett", "Shelf": "Regal",
    },
}
_PRICEBOOKS = (("EU Retail", "EUR"), ("US Retail", "USD"), ("EU Trade", "EUR"), ("UK Retail", "GBP"))
# Part attribute -> tags of the part items it may reference.
_PART_TAGS = {
    "Legs": ("#legs-oak", "#legs-walnut", "#legs-brass"),
    "Seat Pad": ("#seat-pads",),
    "Extension Leaf": ("#leaf-oak", "#leaf-walnut"),
    "Headboard": ("#headboards",),
    "Doors": ("#doors-glass", "#doors-oak"),
}


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _spread(total: int, count: int, rng: random.Random) -> list[int]:
    """``count`` non-negative integers summing to ``total``, as even as possible, shuffled."""
    if count <= 0:
        return []
    base, extra = divmod(total, count)
    sizes = [base + 1] * extra + [base] * (count - extra)
    rng.shuffle(sizes)
    return sizes


def _translate(text: str, locale: str) -> str:
    language = locale.split("-")[0].split("_")[0].lower()
    if language == "en":
        return text
    table = _TRANSLATIONS.get(language)
    if table is None:
        return f"{text} [{locale}]"
    words = text.split(" ")
    # Product names are "<Collection> <Kind> <n>": translate the kind, keep the rest.
    return " ".join(table.get(word, word) for word in words) if text not in table else table[text]


def generate_catalog(
    out_dir: Path,
    products: int,
    options_per_product: float = 5,
    prices_per_product: float = 2,
    parts_ratio: float = 0.1,
    stamp: str = "20261123",
    seed: int = 0,
    locales=("en", "fr", "de"),
) -> dict[str, Path]:
    """Write a canonical catalog batch into ``out_dir`` and return ``{source: path}``.

    Keys: ``products``, ``options``, ``prices``, ``parts`` and ``translations`` (the last
    only when ``locales`` is non-empty). Exactly ``round(products * options_per_product)``
    option rows and ``round(products * prices_per_product)`` price rows are written;
    ``parts_ratio`` of the products get one or two part reference rows.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    kinds = list(_KINDS)
    option_counts = _spread(round(products * options_per_product), products, rng)
    price_counts = _spread(round(products * prices_per_product), products, rng)

    paths = {
        "products": out_dir / f"products_{stamp}.csv",
        "options": out_dir / f"options_{stamp}.csv",
        "prices": out_dir / f"prices_{stamp}.csv",
        "parts": out_dir / f"parts_{stamp}.csv",
    }
    canonical_names: dict[str, None] = {}
    with (
        open(paths["products"], "w", encoding="utf-8", newline="") as products_file,
        open(paths["options"], "w", encoding="utf-8", newline="") as options_file,
        open(paths["prices"], "w", encoding="utf-8", newline="") as prices_file,
        open(paths["parts"], "w", encoding="utf-8", newline="") as parts_file,
    ):
        product_rows = csv.writer(products_file, lineterminator="\n")
        option_rows = csv.writer(options_file, lineterminator="\n")
        price_rows = csv.writer(prices_file, lineterminator="\n")
        part_rows = csv.writer(parts_file, lineterminator="\n")
        product_rows.writerow(
            [
                "sku", "name", "description", "keywords", "tags", "model_asset_id",
                "meta:Collection", "meta:Designer", "meta:Weight kg", "meta:EAN",
            ]
        )
        option_rows.writerow(["sku", "attribute", "value", "default"])
        price_rows.writerow(["sku", "pricebook", "currency", "price"])
        part_rows.writerow(["sku", "attribute", "asset", "asset_type"])

        product_batch: list[list[str]] = []
        option_batch: list[list[str]] = []
        price_batch: list[list[str]] = []
        part_batch: list[list[str]] = []
        for index in range(products):
            kind = kinds[index % len(kinds)]
            prefix, keywords, tag, (low, high), attributes, part_attribute = _KINDS[kind]
            collection = _COLLECTIONS[rng.randrange(len(_COLLECTIONS))]
            sku = f"{prefix}-{index:07d}"
            name = f"{collection} {kind} {index % 97 + 1}"
            canonical_names[name] = None
            description = (
                f"{collection} {kind.lower()} from the {collection} collection. "
                f"Designed by {_DESIGNERS[index % len(_DESIGNERS)]}; removable covers, FSC-certified wood."
            )
            tags = f"{tag};{collection.lower()}" + (";new" if rng.random() < 0.1 else "")
            model = _uuid(rng) if rng.random() < 0.8 else ""
            weight = f"{rng.uniform(low, high):.1f}"
            ean = f"{rng.randrange(10**12, 10**13)}" if rng.random() < 0.9 else ""
            product_rows_fields = [
                sku, name, description, ";".join(keywords), tags, model,
                collection, _DESIGNERS[rng.randrange(len(_DESIGNERS))], weight, ean,
            ]
            product_batch.append(product_rows_fields)

            # Options: spread this product's rows over its attributes, distinct values each.
            per_attribute = _spread(option_counts[index], len(attributes), rng)
            for attribute, count in zip(attributes, per_attribute, strict=True):
                if not count:
                    continue
                pool = _VALUES[attribute]
                canonical_names[attribute] = None
                start = rng.randrange(len(pool))
                default_at = rng.randrange(count)
                for k in range(count):
                    value = pool[(start + k) % len(pool)]
                    if k >= len(pool):
                        value = f"{value} {k // len(pool) + 1}"
                    canonical_names[value] = None
                    option_batch.append([sku, attribute, value, "true" if k == default_at else "false"])

            base_price = rng.uniform(80, 4000)
            for k in range(price_counts[index]):
                pricebook, currency = _PRICEBOOKS[k % len(_PRICEBOOKS)]
                if k >= len(_PRICEBOOKS):
                    pricebook = f"{pricebook} {k // len(_PRICEBOOKS) + 1}"
                factor = (1.0, 1.08, 0.7, 0.86)[k % len(_PRICEBOOKS)]
                price_batch.append([sku, pricebook, currency, f"{base_price * factor:.2f}"])

            if rng.random() < parts_ratio:
                tags_for_part = _PART_TAGS[part_attribute]
                part_batch.append([sku, part_attribute, tags_for_part[rng.randrange(len(tags_for_part))], "item"])
                if rng.random() < 0.5:
                    part_batch.append([sku, part_attribute, _uuid(rng), "item"])

            if len(option_batch) >= 50_000:
                product_rows.writerows(product_batch)
                option_rows.writerows(option_batch)
                price_rows.writerows(price_batch)
                part_rows.writerows(part_batch)
                product_batch, option_batch, price_batch, part_batch = [], [], [], []
        product_rows.writerows(product_batch)
        option_rows.writerows(option_batch)
        price_rows.writerows(price_batch)
        part_rows.writerows(part_batch)

    if locales:
        paths["translations"] = out_dir / f"translations_{stamp}.csv"
        with open(paths["translations"], "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, quoting=csv.QUOTE_ALL, lineterminator="\n")
            writer.writerow(["Canonical Name", *locales])
            writer.writerows([name, *(_translate(name, locale) for locale in locales)] for name in canonical_names)
    return paths


def rewrite_rows(path: Path, change: Callable[[int, dict[str, str]], dict[str, str]]) -> None:
    """Rewrite the CSV at ``path`` in place, each data row replaced by ``change(line, row)``.

    ``line`` is the row's 1-based line in the file (the first data row is line 2); the header
    and its column order stay. Tests use it to damage a generated file at known lines.
    """
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames
        rows = [change(number, row) for number, row in enumerate(reader, start=2)]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
