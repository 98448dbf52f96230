#!/usr/bin/env python3
"""pyctr's main job, shown on the default busybox image: containers whose
network you control, on a simulated two-node cluster.

Each "node" is a network namespace with its own NIC (nic0, a veth to a switch
bridge in a third namespace), so nothing here touches this machine's own
network. On both nodes it:
  1. starts a container and shows it is alone in its namespaces (PID 1);
  2. wires containers with veth on a bridge that holds the node's NIC
     (the study's Fig. 1) and has them ping across nodes and stream TCP;
  3. does the same with macvlan (bridge mode) on the node's NIC, including
     the node reaching its own containers through pyctr's host shim;
and then removes everything it made.

    /opt/pyctr/bin/python examples/demo.py
"""
import subprocess
import sys
import time

from pyctr.testbed import Testbed

SUBNET = "10.77.0.0/24"
RANGES = ("10.77.0.100-10.77.0.149", "10.77.0.150-10.77.0.199")


def say(text):
    print(text, flush=True)


def pyctr(node, *args, timeout=60):
    p = node.pyctr(*args, timeout=timeout)
    if p.returncode != 0:
        sys.exit("demo: pyctr %s failed on %s: %s" % (" ".join(args), node.name,
                                                       p.stderr.strip()))
    return p.stdout.strip()


def in_container(node, name, script):
    return pyctr(node, "exec", name, "sh", "-c", script)


def network_round(tb, kind):
    a, b = tb.nodes
    for node, rng in zip(tb.nodes, RANGES):
        extra = ["--kind", "macvlan"] if kind == "macvlan" else []
        pyctr(node, "net", "create", "lan", "--subnet", SUBNET, "--uplink", "nic0",
              "--range", rng, *extra)
    ips = {}
    for node, name in ((a, "a1"), (a, "a2"), (b, "b1")):
        pyctr(node, "run", "-d", "--name", name, "--net=lan", "busybox", "sleep", "300")
        ips[name] = in_container(node, name, "ip -o -4 addr show eth0").split()[3]
        say("  %s on node %s: eth0 %s" % (name, node.name, ips[name]))
    a1, a2, b1 = (ips[n].split("/")[0] for n in ("a1", "a2", "b1"))
    for node, src, dst, what in ((a, "a1", b1, "across nodes"), (a, "a1", a2, "on one node")):
        out = in_container(node, src, "ping -c 3 -W 2 %s | tail -1" % dst)
        say("  ping %s -> %s (%s): %s" % (src, dst, what, out))
    out = a.run(["busybox", "ping", "-c", "1", "-W", "2", a1]).stdout.splitlines()[-1]
    say("  node %s -> its own container a1: %s" % (a.name, out))
    srv = b.pyctr_popen("exec", "b1", "sh", "-c",
                        "timeout 20 nc -l -p 5001 -e sh -c 'wc -c > /tmp/n'; cat /tmp/n",
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    in_container(a, "a1", "for i in 1 2 3 4 5 6 7 8 9 10; do dd if=/dev/zero bs=64k "
                 "count=256 2>/dev/null | nc %s 5001 && exit 0; sleep 0.2; done" % b1)
    out, _ = srv.communicate(timeout=30)
    say("  TCP stream a1 -> b1: %s of %d bytes arrived (throughput: pyctr bench net)"
        % (out.split()[-1], 256 * 65536))
    for node, names in ((a, ("a1", "a2")), (b, ("b1",))):
        pyctr(node, "rm", "-f", *names)
        pyctr(node, "net", "rm", "lan")


def main():
    with Testbed(prefix="pyctr-demo", nodes=2, subnet=SUBNET) as tb:
        a, b = tb.nodes
        say("two simulated nodes: %s (%s) and %s (%s), one switch" % (a.name, a.ip, b.name,
                                                                    b.ip))
        say("\n1. a container on node %s:" % a.name)
        say(pyctr(a, "run", "--rm", "--hostname", "box", "busybox", "sh", "-c",
                  "echo \"  hostname $(hostname), PID $$, processes: $(ls /proc | "
                  "grep -c '^[0-9]')\"; echo \"  interfaces: $(ls /sys/class/net | xargs)\""))
        say("\n2. veth on a bridge holding each node's NIC (--net=lan, kind bridge):")
        network_round(tb, "bridge")
        say("\n3. macvlan in bridge mode on each node's NIC (--net=lan, kind macvlan):")
        network_round(tb, "macvlan")
    say("\ndone: namespaces, interfaces, leases and containers removed")


if __name__ == "__main__":
    main()
