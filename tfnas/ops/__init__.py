"""Building blocks shared by supernets and derived networks."""
