"""Kingdee K3 WISE: the WebAPI (``/K3API``, JSON) and SOAP (zeep) transports."""
