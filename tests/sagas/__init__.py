"""Sagas defined by the tests alone, to show that the engine, the handlers and the console
run any saga that is registered, with nothing of its own built into them."""
