"""Pure compute: numpy / xarray / dask in and out. No I/O, no cluster, no configuration files.

Importing :mod:`lcup.ops` pulls in neither ``distributed``, ``pystac_client`` nor :mod:`lcup.io`.
"""
