"""``make bench``: Inlet measured side by side with the floors of its stack."""
