"""Prices and tax."""

TAX_RATE = 0.20

PRICES = {"apple": 0.50, "pear": 0.75}


def unit_price(item):
    return PRICES.get(item, 1.00)
