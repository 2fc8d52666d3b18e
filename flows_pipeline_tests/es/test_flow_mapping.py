import pyarrow as pa

from flows_pipeline.es.flow_mapping import ATTEMPT_FIELD, ES_FIELD_TYPES, es_properties
from flows_pipeline.tables.flow_schema import FLOW_TABLE_SCHEMA

# the Elasticsearch types that take each Arrow type's values as the bulk encoder writes them
ACCEPTS = {
    "date": pa.types.is_timestamp,
    "ip": pa.types.is_string,
    "keyword": lambda t: pa.types.is_string(t) or pa.types.is_integer(t),
    "long": pa.types.is_integer,
    "integer": lambda t: pa.types.is_integer(t) and t.bit_width <= 32,
    "short": lambda t: pa.types.is_integer(t) and t.bit_width <= 16,
}


def test_every_flow_table_column_has_a_mapping_that_takes_its_values():
    # dynamic: strict refuses others; the encoder adds the row number and the load attempt
    assert set(ES_FIELD_TYPES) == {*FLOW_TABLE_SCHEMA.names, "event.sequence", ATTEMPT_FIELD}
    for field in FLOW_TABLE_SCHEMA:
        assert ACCEPTS[ES_FIELD_TYPES[field.name]](field.type), field.name


def test_dotted_names_nest_as_objects():
    properties = es_properties()
    assert properties["network"]["properties"]["vlan"]["properties"]["id"] == {"type": "keyword"}
    assert properties["network"]["properties"]["community_id"] == {"type": "keyword"}
    assert properties["source"]["properties"]["mac"] == {"type": "keyword"}
