"""flows_pipeline: hourly network flow records into Parquet tables and an Elasticsearch index."""
