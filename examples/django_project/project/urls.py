"""URLs of the example project."""

from catalog import views
from django.urls import path

urlpatterns = [
    path("products/", views.product_list, name="product-list"),
    path("products/<int:pk>/", views.product_detail, name="product-detail"),
    path("products/<int:pk>/price/", views.update_price, name="product-price"),
    path("cache/stats/", views.cache_stats, name="cache-stats"),
]
