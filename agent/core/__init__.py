"""The pure core: values in, values out. Imports nothing outside the standard library."""
