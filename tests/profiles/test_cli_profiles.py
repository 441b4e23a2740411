import json

import numpy as np
import yaml
from click.testing import CliRunner

from llmkt.cli import main

from .http_helpers import FakeOpenAI, Server


def test_profiles_commands_end_to_end(csv_folder, tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"data": {"name": "csv", "path": str(csv_folder)}, "progress": False,
                                   "store": str(tmp_path / "p.sqlite"), "backend": {"kind": "template"}}))
    r = CliRunner()
    out = r.invoke(main, ["profiles", "generate", str(job)])
    assert out.exit_code == 0, out.output
    assert "users: 2, already stored: 0, generated now: 2, failed: 0" in out.output
    out = r.invoke(main, ["profiles", "stats", str(job)])
    assert out.exit_code == 0 and json.loads(out.output)["profiles"] == 2
    out = r.invoke(main, ["profiles", "show", str(job), "--user", "2"])
    assert out.output.startswith("--- user 2: 2 interactions shown") and "History: 2 interactions." in out.output
    with Server(FakeOpenAI) as srv:
        emb = ["--set", "embedding.kind=openai", "--set", f"embedding.base_url={srv.url}",
               "--set", "embedding.model=emb", "--set", "embedding.api_key_env=null"]
        out = r.invoke(main, ["profiles", "embed", str(job), *emb])
        assert out.exit_code == 0, out.output
        assert "encoder openai:emb:-:norm: 2 embedded now, 2 in all, dim 4" in out.output
        out = r.invoke(main, ["profiles", "export", str(job), "-o", str(tmp_path / "v.npz"), *emb])
        assert out.exit_code == 0 and ": 2 users x 4 dims (openai:emb:-:norm)" in out.output, out.output
    z = np.load(tmp_path / "v.npz")
    assert z["vectors"].shape == (2, 4) and z["user_ids"].tolist() == [1, 2]


def test_bad_config_exits_2_with_the_key(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("backend:\n  kind: template\n  topp: 3\n")
    out = CliRunner().invoke(main, ["profiles", "generate", str(job)])
    assert out.exit_code == 2 and "backend.topp: unknown key" in out.output


def test_weights_list():
    out = CliRunner().invoke(main, ["weights", "list"])
    assert out.exit_code == 0 and "qwen2.5-coder-1.5b-instruct" in out.output and "smollm2-135m-instruct" in out.output


def test_a_sharded_job_merged_equals_the_whole_job(tmp_path):
    from tests.test_bad_inputs import write_csv_data

    data = write_csv_data(tmp_path / "data")
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"data": {"name": "csv", "path": str(data)}, "progress": False,
                                   "store": str(tmp_path / "whole.sqlite"), "backend": {"kind": "template"}}))
    r = CliRunner()
    assert r.invoke(main, ["profiles", "generate", str(job)]).exit_code == 0
    users = []
    for i in range(3):
        out = r.invoke(main, ["profiles", "generate", str(job), "--shard", f"{i}/3",
                              "--set", f"store={tmp_path / f'shard{i}.sqlite'}"])
        assert out.exit_code == 0, out.output
        users.append(int(out.output.split("users: ")[1].split(",")[0]))
    assert sum(users) == 30 and all(0 < u < 30 for u in users)  # disjoint shards covering every user
    out = r.invoke(main, ["profiles", "merge", str(tmp_path / "merged.sqlite"),
                          *[str(tmp_path / f"shard{i}.sqlite") for i in range(3)], str(tmp_path / "shard0.sqlite")])
    assert out.exit_code == 0, out.output
    assert out.output.strip().splitlines()[-1] == f"{tmp_path / 'merged.sqlite'}: 30 profiles"
    assert f"shard0.sqlite: {users[0]} read, 0 added" in out.output  # the second time: nothing added
    from llmkt.profiles.store import ProfileStore

    with ProfileStore(tmp_path / "whole.sqlite", create=False) as w, \
            ProfileStore(tmp_path / "merged.sqlite", create=False) as m:
        assert {x.key: x.text for x in w.records()} == {x.key: x.text for x in m.records()}
    bad = r.invoke(main, ["profiles", "generate", str(job), "--shard", "3/3"])
    assert bad.exit_code == 2 and "index 3 must be below count 3" in bad.output
    bad = r.invoke(main, ["profiles", "generate", str(job), "--shard", "half"])
    assert bad.exit_code == 2 and "expected I/N" in bad.output
