"""Real servers a cluster deployment needs, on loopback ports chosen at run time:
a throwaway PostgreSQL (Debian's, from initdb; run as the `postgres` user when the
tests run as root, since PostgreSQL refuses root) and moto's S3 server. Each stops
when its `stop()` is called (the fixtures do)."""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from conftest import ROOT, Server, free_port


def _pg_bin():
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin")):
        if os.path.exists(os.path.join(d, "initdb")):
            return d
    raise RuntimeError("PostgreSQL's initdb is missing: run scripts/setup test")


class Postgres:
    """`durable`: PostgreSQL's own fsync on (benchmarks); the tests run it off."""

    def __init__(self, durable=False):
        self.durable = durable
        self.bin = _pg_bin()
        self.dir = tempfile.mkdtemp(prefix="kinescope-pg-")
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.port = free_port()
        self.data = os.path.join(self.dir, "data")

    def _run(self, tool, *args, check=True):
        cmd = [os.path.join(self.bin, tool), *args]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and p.returncode != 0:
            raise RuntimeError(f"{tool} failed: {p.stderr}")
        return p

    def start(self):
        if not os.path.exists(self.data):
            self._run("initdb", "-D", self.data, "-A", "trust", "-U", "kinescope", "-E", "UTF8", "--no-sync")
        opts = f"-p {self.port} -k {self.dir} -h 127.0.0.1 -c fsync={'on' if self.durable else 'off'}"
        self._run("pg_ctl", "-D", self.data, "-o", opts, "-l", os.path.join(self.dir, "log"), "-w", "start")
        return self

    def restart(self, down_seconds=0):
        self._run("pg_ctl", "-D", self.data, "-m", "immediate", "stop", check=False)
        time.sleep(down_seconds)
        self.start()

    def psql(self, db, sql):
        p = self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "kinescope", "-d", db, "-At", "-c", sql)
        return p.stdout.strip()

    def database(self, name):
        self.psql("postgres", f"CREATE DATABASE {name}")
        return f"postgres://kinescope@127.0.0.1:{self.port}/{name}"

    def stop(self):
        self._run("pg_ctl", "-D", self.data, "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


class S3:
    """moto's server mode, the S3 REST API on loopback."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(self.url + "/", timeout=5).read()
                break
            except Exception:
                if time.time() > deadline:
                    raise RuntimeError("moto_server did not answer within 60 s")
                time.sleep(0.1)

    def bucket(self, name):
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/{name}", method="PUT"), timeout=10).read()
        return name

    def objects(self, bucket, prefix=""):
        import boto3
        s3 = boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class ClusterNode(Server):
    """One `kinescope serve --cluster … --media …` node with its own data directory."""

    def __init__(self, data_dir, database, s3, bucket, lease_secs=3, keys=None, extra=()):
        super().__init__(
            data_dir,
            keys=keys,
            extra_args=["--cluster", database, "--media", f"s3://{bucket}/media", "--cluster-lease-secs", str(lease_secs),
                        *extra],
            extra_env={"AWS_ENDPOINT_URL": s3.url, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"},
        )

    def writes(self):
        return any("serving as the cluster's writer" in line for line in self.log)
