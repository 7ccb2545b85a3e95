"""The program being edited: it makes one cart, then keeps printing what it computes."""

import sys
import time

from shop.cart import Cart, with_tax

TICKS = int(sys.argv[1]) if len(sys.argv) > 1 else 30

cart = Cart().add("apple", 3).add("pear", 2)  # one live object, made once

for tick in range(1, TICKS + 1):
    print(f"tick {tick:2}: {cart.describe()} | with tax {with_tax(cart.total()):.2f}", flush=True)
    time.sleep(0.4)
print("the program ran to its end without a restart", flush=True)
