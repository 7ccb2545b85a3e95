"""A tiny shop: prices, a cart, tax."""
