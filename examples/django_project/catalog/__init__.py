"""A product catalogue whose pages are cached with DataFerry through Django's cache API."""
