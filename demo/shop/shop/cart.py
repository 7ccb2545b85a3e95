"""A cart of items."""

from shop.pricing import TAX_RATE, unit_price


class Cart:
    def __init__(self):
        self.lines = []
        print("a new cart is opened", flush=True)

    def add(self, item, quantity=1):
        self.lines.append((item, quantity))
        return self

    def total(self):
        return sum(unit_price(item) * quantity for item, quantity in self.lines)

    def describe(self):
        return f"{len(self.lines)} lines, {self.total():.2f} before tax"


def with_tax(amount):
    return amount * (1 + TAX_RATE)
