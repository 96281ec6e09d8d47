"""This system's contracts: the messages its services exchange (``messages``), its queues
and topics (``topology``) and their JSON Schemas (``schemas``). ``messaging`` is the
machinery that carries them and imports nothing from here."""
