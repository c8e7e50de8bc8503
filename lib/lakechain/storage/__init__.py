"""Storage: the Spark session, Delta tables by name, and every table schema."""
