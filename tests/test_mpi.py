"""MPI settings, the doctor's judgement and the paper benchmark's parsing and
reports, without root: pyctr.mpi on attachment records, the doctor on
canned container facts (the real thing is in test_mpi_cluster.py), the
workloads' parsers on output in the tools' own format, and a report written
from synthetic samples. Nothing here measures time."""
import csv
import io
import json
import os
import subprocess
import sys
import types

import pytest

from pyctr import mpi
from pyctr.mpi import doctor, relay
from pyctr.state import ContainerState
from pyctr.bench import paper
from pyctr.bench import workloads as wl
from pyctr.errors import PyctrError

PYCTR = [sys.executable, "-m", "pyctr"]


# ------------------------------------------------------------- mpi_env

def att(ip, ifname="eth0", **kw):
    rec = {"kind": "veth", "ifname": ifname, "ip": ip}
    rec.update(kw)
    return rec


def test_interfaces_are_named_by_the_containers_subnet_for_open_mpi_and_pmix():
    env = mpi.mpi_env([att("10.77.0.101/24")], "openmpi")
    assert env["OMPI_MCA_btl_tcp_if_include"] == "10.77.0.0/24"
    assert env["OMPI_MCA_oob_tcp_if_include"] == "10.77.0.0/24"
    assert env["PMIX_MCA_ptl_tcp_if_include"] == "10.77.0.0/24"
    assert env["OMPI_MCA_mpi_yield_when_idle"] == "1"
    assert env["OMPI_MCA_hwloc_base_binding_policy"] == "none"
    assert "UCX_NET_DEVICES" not in env   # MPICH's, not asked for
    spread = mpi.mpi_env([att("10.77.0.101/24")], "openmpi", colocated=False)
    assert "OMPI_MCA_hwloc_base_binding_policy" not in spread


def test_isolated_containers_talk_tcp_and_groups_keep_shared_memory_without_cma():
    alone = mpi.mpi_env([att("10.77.0.101/24")])
    assert alone["OMPI_MCA_btl"] == "self,tcp"
    assert alone["UCX_TLS"] == "tcp,self"
    assert "OMPI_MCA_btl_vader_single_copy_mechanism" not in alone
    group = mpi.mpi_env([att("10.77.0.101/24")], shared_memory=True)
    assert group["OMPI_MCA_btl"] == "self,vader,tcp"
    assert group["OMPI_MCA_btl_vader_single_copy_mechanism"] == "none"
    assert "UCX_TLS" not in group


def test_mpich_and_libfabric_get_the_interface_name():
    env = mpi.mpi_env([att("192.168.5.7/16", "eth1"), att("10.1.2.3/24", "eth0")], "mpich")
    assert env["UCX_NET_DEVICES"] == "eth1,eth0"
    assert env["FI_TCP_IFACE"] == "eth1"
    assert not any(k.startswith("OMPI_") for k in env)


def test_several_interfaces_list_every_subnet_once():
    env = mpi.mpi_env([att("10.0.0.5/24", "eth0"), att("10.0.0.6/24", "eth1"),
                       att("172.16.1.1/12", "eth2")])
    assert env["OMPI_MCA_btl_tcp_if_include"] == "10.0.0.0/24,172.16.0.0/12"


def test_attachment_objects_and_a_separate_subnet_field_work_too():
    obj = types.SimpleNamespace(ifname="net1", ip="10.9.8.7", subnet="10.9.0.0/16")
    assert mpi.mpi_env([obj])["OMPI_MCA_btl_tcp_if_include"] == "10.9.0.0/16"


@pytest.mark.parametrize("atts, words", [
    ([], "no network interface"),
    ([{"ifname": "eth0"}], "needs an interface name and an address"),
    ([{"ifname": "eth0", "ip": "10.0.0.1"}], "has no prefix length"),
    ([{"ifname": "eth0", "ip": "10.0.0.1/xx"}], "malformed address"),
])
def test_unusable_attachments_are_one_clear_error(atts, words):
    with pytest.raises(PyctrError) as e:
        mpi.mpi_env(atts)
    assert words in str(e.value)


def test_unknown_launcher_is_refused():
    with pytest.raises(PyctrError, match="unknown launcher"):
        mpi.mpi_env([att("10.0.0.1/24")], "lam")


def test_users_own_settings_win():
    env = mpi.merge({"OMPI_MCA_btl": "self,vader,tcp", "HOME": "/root"},
                    mpi.mpi_env([att("10.0.0.1/24")]))
    assert env["OMPI_MCA_btl"] == "self,vader,tcp"
    assert env["OMPI_MCA_btl_tcp_if_include"] == "10.0.0.0/24"
    assert env["HOME"] == "/root"


def test_describe_says_what_each_setting_does():
    env = mpi.mpi_env([att("10.77.0.101/24")])
    lines = mpi.describe(env)
    assert len(lines) == len(env)
    text = "\n".join(lines)
    assert "OMPI_MCA_btl_tcp_if_include=10.77.0.0/24" in text
    assert "127.0.0.1" in text          # why PMIx needs its setting
    assert "TCP only" in text
    assert mpi.describe({"PATH": "/bin"}) == []


def test_launcher_side_settings_come_from_the_hosts_own_interface():
    env = mpi.launcher_env([{"ifname": "br0", "ip": "10.89.0.1/24"}])
    assert env["PMIX_MCA_ptl_tcp_if_include"] == "10.89.0.0/24"
    assert env["HYDRA_IFACE"] == "br0"
    with pytest.raises(PyctrError, match="no address in the containers' subnet"):
        mpi.launcher_env([])


def test_pmix_uris_are_read_from_the_environment():
    env = {"PMIX_SERVER_URI41": "1209073664.0;tcp4://127.0.0.1:42321",
           "PMIX_SERVER_URI2": "1209073664.0;tcp4://10.88.0.254:51237", "PATH": "/bin"}
    assert mpi.pmix_uris(env) == [("PMIX_SERVER_URI2", "10.88.0.254"),
                                  ("PMIX_SERVER_URI41", "127.0.0.1")]


# -------------------------------------------------------------- doctor

class FakeProbe(doctor.Probe):
    """A container as the doctor sees it, from canned facts."""

    def __init__(self, name, ifaces, env=None, ns=None, networks=()):
        super().__init__(name, ContainerState(id="x", name=name, pid=1, networks=list(networks)))
        self._ifaces, self._env, self._ns = ifaces, env or {}, ns or {}

    def ifaces(self):
        return self._ifaces

    def environ(self):
        return self._env

    def ns(self, kind):
        return self._ns.get(kind, 1)


def iface(name, ip, prefix=24, mtu=1500, up=True):
    return {"ifname": name, "ip": ip, "prefix": prefix, "mtu": mtu, "up": up}


def run_doctor(probes, **kw):
    out = io.StringIO()
    report = doctor.Report(out)
    doctor.doctor(probes, report, connect=False, environ=kw.pop("environ", {}), **kw)
    return report.problems, out.getvalue()


def good_env(*ifs, launcher="openmpi"):
    return mpi.mpi_env([mpi.Iface(i["ifname"], i["ip"], i["prefix"]) for i in ifs], launcher)


def test_a_well_configured_pair_has_no_problems():
    a, b = iface("eth0", "10.77.0.101"), iface("eth0", "10.77.0.111")
    problems, text = run_doctor([FakeProbe("a", [a], good_env(a)),
                                 FakeProbe("b", [b], good_env(b))])
    assert problems == 0, text
    assert "ok       a: eth0 10.77.0.101/24" in text


def test_an_address_on_both_containers_is_named_as_the_hang_it_causes():
    a = [iface("eth0", "10.77.0.101"), iface("docker0", "172.17.0.1", 16)]
    b = [iface("eth0", "10.77.0.111"), iface("docker0", "172.17.0.1", 16)]
    problems, text = run_doctor([FakeProbe("a", a), FakeProbe("b", b)])
    assert "address 172.17.0.1 is on a and b" in text
    assert "may reach itself" in text
    # and, without if_include, that MPI may pick the wrong one of two interfaces
    assert "OMPI_MCA_btl_tcp_if_include is not set and there are 2 interfaces" in text
    assert problems >= 3


def test_an_if_include_that_names_none_of_the_addresses_is_a_problem():
    a = iface("eth0", "10.77.0.101")
    env = good_env(a)
    env["OMPI_MCA_btl_tcp_if_include"] = "192.168.0.0/16"
    problems, text = run_doctor([FakeProbe("a", [a], env)])
    assert problems == 1
    assert "OMPI_MCA_btl_tcp_if_include=192.168.0.0/16 names none of its addresses" in text
    assert "fix: OMPI_MCA_btl_tcp_if_include=10.77.0.0/24" in text


def test_if_include_by_interface_name_counts_as_covering():
    a = iface("eth0", "10.77.0.101")
    env = good_env(a)
    env["OMPI_MCA_btl_tcp_if_include"] = "eth0"
    assert run_doctor([FakeProbe("a", [a], env)])[0] == 0


def test_a_container_without_network_cannot_hold_a_rank():
    problems, text = run_doctor([FakeProbe("lonely", [])])
    assert problems == 1 and "no IPv4 interface that is up" in text


def test_mpich_without_ucx_tls_is_warned_about_shared_memory_across_containers():
    a = iface("eth0", "10.77.0.101")
    env = good_env(a, launcher="mpich")
    del env["UCX_TLS"]
    problems, text = run_doctor([FakeProbe("a", [a], env)], launcher="mpich")
    assert problems == 1 and "UCX will try shared memory" in text


def test_forced_cma_is_a_problem():
    a = iface("eth0", "10.77.0.101")
    env = good_env(a)
    env["OMPI_MCA_btl_vader_single_copy_mechanism"] = "cma"
    problems, text = run_doctor([FakeProbe("a", [a], env)])
    assert problems == 1 and "aborts" in text


def test_different_mtus_and_namespaces_are_reported():
    a, b = iface("eth0", "10.77.0.101", mtu=1500), iface("eth0", "10.77.0.111", mtu=9000)
    problems, text = run_doctor([
        FakeProbe("a", [a], good_env(a), ns={"user": 1, "ipc": 1, "mnt": 1, "net": 1}),
        FakeProbe("b", [b], good_env(b), ns={"user": 2, "ipc": 2, "mnt": 2, "net": 2})])
    assert problems == 1 and "MTUs differ" in text
    assert "different user namespaces: CMA" in text
    assert "ranks of both talk TCP" in text


def test_a_loopback_pmix_uri_in_the_launchers_environment_is_explained():
    a = iface("eth0", "10.77.0.101")
    problems, text = run_doctor([FakeProbe("a", [a], good_env(a))], environ={
        "PMIX_SERVER_URI41": "1.0;tcp4://127.0.0.1:4242"})
    assert problems == 0
    assert "PMIX_SERVER_URI41 points at 127.0.0.1: ranks that `pyctr run` starts reach it " \
        "through pyctr's relay" in text
    assert "PMIX_MCA_ptl_tcp_if_include=10.77.0.0/24" in text


def test_hybrid_launch_needs_tcp_between_containers_and_no_launcher_setting():
    a, b = iface("eth0", "10.89.0.2"), iface("eth0", "10.89.0.3")
    env_a = mpi.mpi_env([mpi.Iface("eth0", "10.89.0.2", 24)])
    del env_a["OMPI_MCA_btl"]
    probes = [FakeProbe("a", [a], env_a, ns={"mnt": 1}),
              FakeProbe("b", [b], good_env(b), ns={"mnt": 2})]
    problems, text = run_doctor(probes, hybrid=True)
    assert "a: Open MPI will try shared memory (vader)" in text
    assert "b: Open MPI will try" not in text
    assert "no host address or launcher setting is needed" in text
    assert problems == 1


def test_macvlan_private_mode_is_explained():
    a = iface("eth0", "10.77.0.101")
    problems, text = run_doctor([FakeProbe("a", [a], good_env(a), networks=[
        {"kind": "macvlan", "mode": "private", "ifname": "eth0", "ip": "10.77.0.101/24"}])])
    assert "cannot reach each other" in text


def test_doctor_refuses_an_unknown_container(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the doctor checks for root first")
    p = subprocess.run(PYCTR + ["--root", str(tmp_path), "mpi-doctor", "nosuch"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 125
    assert p.stderr.strip() == "pyctr: no such container: nosuch"


def test_doctor_with_bad_flags_is_one_line():
    p = subprocess.run(PYCTR + ["mpi-doctor", "--launcher", "lam"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 125
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


# ---------------------------------------------------------- workloads

HPCC_SUMMARY = """Begin of HPL section.
T/V                N    NB     P     Q               Time                 Gflops
--------------------------------------------------------------------------------
WR11C2R4        2000    80     1     2               0.72              7.442e+00
--------------------------------------------------------------------------------
WR11C2R4        2000    80     1     2               0.80              6.675e+00
End of HPL section.
Begin of Summary section.
VersionMajor=1
Success=1
HPL_Tflops=0.00744221
HPL_time=0.71671
HPL_N=2000
StarDGEMM_Gflops=5.84069
End of Summary section.
"""


def test_hpcc_summary_gives_hpl_and_the_dgemm_control(tmp_path):
    f = tmp_path / "hpccoutf.txt"
    f.write_text(HPCC_SUMMARY)
    assert wl.parse_hpcc(str(f)) == {"HPL_Gflops": [7.442, 6.675],
                                     "StarDGEMM_Gflops": pytest.approx(5.84069)}


def test_a_failed_hpcc_run_is_not_a_figure(tmp_path):
    f = tmp_path / "hpccoutf.txt"
    f.write_text(HPCC_SUMMARY.replace("Success=1", "Success=0"))
    with pytest.raises(wl.WorkloadFailed, match="did not pass"):
        wl.parse_hpcc(str(f))
    with pytest.raises(wl.WorkloadFailed, match="wrote no"):
        wl.parse_hpcc(str(tmp_path / "missing.txt"))


GMX_LOG_TAIL = """
               Core t (s)   Wall t (s)        (%)
       Time:       23.757       11.878      200.0
                 (ns/day)    (hour/ns)
Performance:       72.740        0.330
"""


def test_gromacs_log_gives_mdruns_wall_time(tmp_path):
    f = tmp_path / "run.log"
    f.write_text("lots of log\n" + GMX_LOG_TAIL)
    assert wl.parse_gromacs_log(str(f)) == pytest.approx(11.878)
    f.write_text("Started mdrun\n")
    with pytest.raises(wl.WorkloadFailed, match="did not finish"):
        wl.parse_gromacs_log(str(f))


def test_openfoam_control_dict_gets_a_short_end_time_and_no_output(tmp_path):
    cd = tmp_path / "controlDict"
    cd.write_text("application     interFoam;\nendTime         1;\ndeltaT 0.001;\n"
                  "writeControl    adjustable;\nwriteInterval   0.05;\n")
    w = wl.DamBreak(quick=True)
    w.edit_control(str(cd))
    text = cd.read_text()
    assert "endTime         0.25;" in text
    assert "writeControl    timeStep;" in text
    assert "writeInterval   100000;" in text
    assert "deltaT 0.001;" in text


def test_quick_sizes_are_smaller_than_full_ones():
    for cls in (wl.Hpl, wl.Gromacs, wl.DamBreak, wl.PitzDaily, wl.PingPong, wl.Iperf):
        quick, full = cls(True), cls(False)
        assert quick.describe() != full.describe(), cls.__name__


def test_unknown_workload_is_refused():
    with pytest.raises(PyctrError, match="unknown workload 'linpack'"):
        wl.by_key(["linpack"], True)


def test_setup_runs_mpirun_on_the_launcher_node_with_one_rank_per_node():
    seen = []

    def wrap(argv, env):
        seen.append((argv, env))
        return ["true"]

    node = wl.Node("A", "10.77.0.1", wrap)
    setup = wl.Setup("nic", node, node, node, "/agent", "/work", {"OMPI_MCA_btl": "self,tcp"})
    out = setup.mpirun(["hpcc"], cwd="/work/hpl", env={"WM_PROJECT_DIR": "/x"})
    assert out.rc == 0
    argv, env = seen[0]
    assert argv[:3] == ["mpirun.openmpi", "-np", "2"]
    assert "nodeA:1,nodeB:1" in argv and "/agent" in argv
    assert argv[argv.index("--bind-to") + 1] == "none"
    assert argv[argv.index("--wdir") + 1] == "/work/hpl"
    assert argv[argv.index("-x") + 1] == "WM_PROJECT_DIR" and argv[-1] == "hpcc"
    assert env["OMPI_MCA_btl"] == "self,tcp" and env["WM_PROJECT_DIR"] == "/x"


# ------------------------------------------------------------- paper

@pytest.mark.parametrize("argv, words", [
    (["--rate", "fast"], "--rate must be"),
    (["--rate", "0"], "--rate must be"),
    (["--repeat", "0"], "--repeat must be"),
    (["--configs", "veth"], "nic is the peer"),
    (["--configs", "nic,ipvlan"], "unknown configuration 'ipvlan'"),
    (["--workloads", "hpl,stream"], "unknown workload 'stream'"),
    (["--launcher", "pbs"], "invalid choice: 'pbs'"),
    (["--bogus"], "unrecognized arguments"),
])
def test_bad_paper_options_are_one_line(argv, words):
    with pytest.raises(PyctrError) as e:
        paper.parse(argv)
    assert words in str(e.value)


def test_paper_defaults_quick_unshaped_full_on_fast_ethernet():
    q = paper.parse(["--quick"])
    assert (q.rate_mbit, q.repeat) == (None, 2)
    f = paper.parse([])
    assert (f.rate_mbit, f.repeat) == (100, 3)
    assert paper.parse(["--quick", "--rate", "100"]).rate_mbit == 100
    assert f.launchers == ["mpirun"]
    assert paper.parse(["--launcher", "both"]).launchers == ["mpirun", "slurm"]


def synthetic_results(launchers=("mpirun",)):
    ws = wl.by_key([w.key for w in wl.ALL], True)
    r = paper.Results(paper.configs(launchers, paper.DATAPATHS), ws)
    base = {"iperf3": 95.0, "hpl": 8.0, "dgemm": 5.8, "gromacs": 10.0, "dambreak": 2.0, "pitzdaily": 4.0,
            "pingpong_lat": 12.0, "pingpong_bw": 11.9}
    scale = {"nic": 1.0, "veth": 0.98, "macvlan": 0.99}
    launch = {"mpirun": 1.0, "slurm": 0.95}
    for c in r.configs:
        for k, v in base.items():
            m = next(m for m in r.metrics if m.key == k)
            # throughputs shrink, times grow: veth/macvlan are a little slower,
            # srun's a little slower than mpirun's
            f = scale[c.datapath] * launch[c.launcher]
            f = f if m.higher_is_better else 1 / f
            r.samples[c][k] = [v * f * x for x in (0.99, 1.0, 1.01)]
    return ws, r


def test_relative_performance_is_higher_is_better_for_times_and_rates():
    ws, r = synthetic_results()
    iperf = next(m for m in r.metrics if m.key == "iperf3")
    gromacs = next(m for m in r.metrics if m.key == "gromacs")
    assert r.relative(iperf, paper.Config("mpirun", "nic")) == pytest.approx(100.0)
    assert r.relative(iperf, paper.Config("mpirun", "veth")) == pytest.approx(98.0)
    assert r.relative(gromacs, paper.Config("mpirun", "veth")) == pytest.approx(98.0)
    assert paper.study_relative(iperf, "veth") == pytest.approx(100 * 94.016 / 94.1)
    assert paper.study_relative(gromacs, "macvlan") == pytest.approx(100 * 242.364 / 242.944)
    assert paper.study_relative(next(m for m in r.metrics if m.key == "hpl"), "veth") == 99.1


def test_report_files_have_every_cell_filled_and_the_study_beside_ours(tmp_path):
    ws, r = synthetic_results()
    args = types.SimpleNamespace(quick=True, repeat=3, rate_mbit=100)
    files = paper.write_results(str(tmp_path), args, ws, r, 123.0)
    names = {os.path.basename(f) for f in files}
    assert {"paper.md", "paper.csv", "paper.json"} <= names
    md = (tmp_path / "paper.md").read_text()
    table = [l for l in md.splitlines() if l.startswith("| ") and "---" not in l]
    assert len(table) == 1 + len(r.metrics)
    for row in table[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert "" not in cells and "failed" not in cells
        assert cells[2] == "mpirun" and all(c != "-" for c in cells[3:8]), row
    assert "94.1 / 94.016 / 94.033 Mbit/s" in md
    assert "100 / 99.1 / 99.7 %" in md
    assert "242.364 / 242.452 / 242.944 s" in md
    assert "98.0 %" in md
    rows = list(csv.DictReader(open(tmp_path / "paper.csv")))
    assert len(rows) == 3 * len(r.metrics)
    assert {x["launcher"] for x in rows} == {"mpirun"}
    veth_iperf = next(x for x in rows if x["metric"] == "iperf3" and x["config"] == "veth")
    assert float(veth_iperf["median"]) == pytest.approx(95.0 * 0.98)
    assert float(veth_iperf["percent_of_nic"]) == pytest.approx(98.0)
    assert veth_iperf["study_value"] == "94.016"
    data = json.load(open(tmp_path / "paper.json"))
    assert data["rate_mbit"] == 100 and len(data["metrics"]) == len(r.metrics)
    assert data["launchers"] == ["mpirun"]
    assert data["metrics"][0]["configs"]["mpirun"]["veth"]["percent_of_nic"] == \
        pytest.approx(98.0)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    png = tmp_path / "paper.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_srun_rows_stand_beside_mpirun_rows_relative_to_their_own_nic(tmp_path):
    ws, r = synthetic_results(("mpirun", "slurm"))
    args = types.SimpleNamespace(quick=True, repeat=3, rate_mbit=None)
    paper.write_results(str(tmp_path), args, ws, r, 1.0)
    md = (tmp_path / "paper.md").read_text()
    table = [l for l in md.splitlines() if l.startswith("| ") and "---" not in l]
    assert len(table) == 1 + 2 * len(r.metrics)
    rows = [[c.strip() for c in row.strip("|").split("|")] for row in table[1:]]
    iperf = [row for row in rows if row[0] == "iperf3 throughput"]
    assert [row[2] for row in iperf] == ["mpirun", "srun"]
    # Each launcher against its own NIC: the same 98 % and 99 %.
    assert [row[6:8] for row in iperf] == [["98.0 %", "99.0 %"]] * 2
    assert iperf[0][8] != "-" and iperf[1][8:] == ["-", "-"]   # the study once
    assert "srun against mpirun, same datapath" in md and "iperf3: NIC 95.0, veth 95.0" in md
    assert "**macvlan (srun)**: srun --mpi=pmix -N2 -n2 pyctr run" in md
    csv_rows = list(csv.DictReader(open(tmp_path / "paper.csv")))
    assert len(csv_rows) == 6 * len(r.metrics)
    srun_veth = next(x for x in csv_rows if x["metric"] == "iperf3" and
                     x["launcher"] == "slurm" and x["config"] == "veth")
    assert float(srun_veth["percent_of_nic"]) == pytest.approx(98.0)
    assert float(srun_veth["percent_of_mpirun"]) == pytest.approx(95.0)
    data = json.load(open(tmp_path / "paper.json"))
    assert data["launchers"] == ["mpirun", "slurm"]
    assert set(data["metrics"][0]["configs"]["slurm"]) == {"nic", "veth", "macvlan"}


def test_a_failed_configuration_is_named_in_the_report(tmp_path):
    ws, r = synthetic_results()
    macvlan = paper.Config("mpirun", "macvlan")
    for m in r.metrics:
        r.samples[macvlan][m.key] = []
    for w in ws:
        r.fail(macvlan, w, "setup failed: no image")
    r.setup_failed[macvlan] = "no image"
    args = types.SimpleNamespace(quick=True, repeat=3, rate_mbit=None)
    paper.write_results(str(tmp_path), args, ws, r, 1.0)
    md = (tmp_path / "paper.md").read_text()
    assert "**macvlan (mpirun) could not be set up**: no image" in md
    assert "| failed |" in md


def test_the_launchers_loopback_pmix_servers_are_found_once_each():
    env = {"PMIX_SERVER_URI41": "3012.0;tcp4://127.0.0.1:42321",
           "PMIX_SERVER_URI4": "3012.0;tcp4://127.0.0.1:42321",
           "PMIX_SERVER_URI2": "3012.0;tcp4://10.88.0.254:51237", "PATH": "/bin"}
    assert relay.loopback_servers(env) == [("127.0.0.1", 42321)]
    assert relay.loopback_servers({"PMI_FD": "5"}) == []


def test_the_relay_carries_a_ranks_connection_to_the_launchers_server_and_back():
    """The namespace switches are recorded by the fake, in order; the bytes
    go through real sockets. Here the relay listens on 127.0.0.2 because the
    launcher's server already has the port on 127.0.0.1 of this one netns."""
    import socket
    import threading
    from fakes import RecordingSyscalls
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    seen = []

    def echo_upper():
        conn, _ = server.accept()
        conn.settimeout(10)
        while True:
            data = conn.recv(4096)
            if not data:
                seen.append("eof")
                break
            conn.sendall(data.upper())
        conn.close()

    t = threading.Thread(target=echo_upper, daemon=True)
    t.start()
    fake = RecordingSyscalls()
    listeners = relay.listen_in_netns("/proc/self/ns/net", [("127.0.0.2", port)], fake)
    assert fake.names() == ["setns", "loopback_up", "setns"]
    relay.serve(listeners, [("127.0.0.1", port)])
    with socket.create_connection(("127.0.0.2", port), timeout=10) as rank:
        rank.sendall(b"pmix hello " * 1000)
        got = b""
        while len(got) < 11000:
            got += rank.recv(65536)
        assert got == b"PMIX HELLO " * 1000
    t.join(10)
    assert seen == ["eof"]      # the rank's close reached the launcher's side
    server.close()
