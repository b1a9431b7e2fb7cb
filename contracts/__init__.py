"""The event contract's development tooling: the JSON Schemas and AsyncAPI document generated
from the models in libs/common/events, and the compatibility checks between schema versions.
Not part of the runtime: no service imports it and the image does not ship it.
"""
