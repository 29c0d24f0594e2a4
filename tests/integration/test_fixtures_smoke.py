import psycopg


def test_postgres_is_real_and_isolated(database_url):
    with psycopg.connect(database_url) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
    assert int(version) >= 140000
    assert tables == 0


def test_moto_server_answers_over_http(aws_endpoint):
    s3 = aws_endpoint.client("s3")
    s3.create_bucket(Bucket="smoke-bucket")
    assert "smoke-bucket" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
