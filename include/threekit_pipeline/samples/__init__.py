"""Sample data generators: furniture catalogs, translations and asset source files."""
