"""The product table, and a few products to browse."""

from typing import Any

from django.db import migrations, models


def add_products(apps: Any, schema_editor: Any) -> None:
    """Insert the demo products."""
    product = apps.get_model("catalog", "Product")
    product.objects.bulk_create(
        [
            product(name="Teapot", price_cents=2400),
            product(name="Kettle", price_cents=3950),
            product(name="Mug", price_cents=800),
        ]
    )


class Migration(migrations.Migration):
    """Create ``catalog_product`` and fill it."""

    initial = True
    dependencies = ()

    operations = (
        migrations.CreateModel(
            name="Product",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=100)),
                ("price_cents", models.PositiveIntegerField()),
            ],
            options={"ordering": ("pk",)},
        ),
        migrations.RunPython(add_products, migrations.RunPython.noop),
    )
