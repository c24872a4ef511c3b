"""The packaged model catalog (DeepSeek variants) and lookups by id and alias."""

from dslocal.catalog.catalog import Catalog, Variant, load_catalog

__all__ = ["Catalog", "Variant", "load_catalog"]
