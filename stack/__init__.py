"""Running the whole system on one machine: PostgreSQL, the AWS emulator and every service.

Used by ``make demo``/``make up`` and by the end-to-end tests, so both run the same way.
"""
