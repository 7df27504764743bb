"""The dashboard's pages, one module per page; each lists its routes in ``ROUTES``."""
