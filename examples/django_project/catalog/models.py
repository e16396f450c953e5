"""The catalogue's data: products, in the SQLite database."""

from typing import Any

from django.db import models


class Product(models.Model):
    """A product; its price is in cents and never negative (a CHECK constraint in SQL)."""

    name = models.CharField(max_length=100)
    price_cents = models.PositiveIntegerField()

    class Meta:
        """Products are listed in the order they were added."""

        ordering = ("pk",)

    def __str__(self) -> str:
        return str(self.name)

    def as_dict(self) -> dict[str, Any]:
        """The product as the API shows it (and the cache stores it: JSON)."""
        return {"id": self.pk, "name": self.name, "price_cents": self.price_cents}
