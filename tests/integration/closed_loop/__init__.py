"""The whole loop, all seven services, over the real broker and database."""
