"""Device profiles: one small data-table module per profile."""
