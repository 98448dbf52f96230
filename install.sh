#!/bin/sh
# Install pyctr on Debian 12, as root: system packages, a virtualenv in
# /opt/pyctr with pyctr built from this checkout (the cffi shim is compiled
# here), the `pyctr` command in /usr/local/bin, and the default image.
#
#   ./install.sh          what `pyctr run` needs
#   ./install.sh --test   also what the tests and benchmarks use (runc, crun,
#                         bwrap, CNI plugins, iperf3, Open MPI, MPICH, hpcc,
#                         GROMACS, OpenFOAM, podman, containerd, slirp4netns,
#                         passt (pasta), Slurm and munge)
set -eu
# What this installs is for every user (rootless pyctr runs the venv's Python,
# a container's users the image's files), whatever root's own umask is.
umask 022
cd "$(dirname "$0")"
PREFIX=${PYCTR_PREFIX:-/opt/pyctr}

BASE="python3 python3-venv python3-dev gcc libc6-dev libcap-dev libseccomp-dev iproute2 busybox-static procps"
# libpmix-dev: Slurm's PMIx plugin (srun --mpi=pmix) opens pmix2/lib/libpmix.so, which
# only the -dev package has.
EXTRA="runc crun bubblewrap containernetworking-plugins iperf3 mmdebstrap
       openmpi-bin libopenmpi-dev mpich libmpich-dev python3-mpi4py
       hpcc gromacs openfoam openfoam-examples
       podman containerd conmon slirp4netns passt
       slurmctld slurmd slurm-client munge libpmix-dev"
pip_extras=""
[ "${1:-}" = "--test" ] && pip_extras="[test,bench]"

export DEBIAN_FRONTEND=noninteractive
echo "install.sh: apt-get install (base)" >&2
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $BASE >/dev/null
if [ -n "$pip_extras" ]; then
    # As a user of these tools gets them: with their recommended packages.
    echo "install.sh: apt-get install (tests and benchmarks; a few minutes)" >&2
    # The engine tests start their own containerd and podman: no package may
    # start a system-wide daemon (containerd's would stay running). invoke-rc.d
    # and deb-systemd-invoke obey policy-rc.d; one of ours is removed after.
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    # shellcheck disable=SC2086
    apt-get install -y -qq $EXTRA >/dev/null
    [ -z "$policy" ] || { rm -f "$policy"; trap - EXIT; }
fi

echo "install.sh: building pyctr into $PREFIX" >&2
# Debian's interpreter, not whatever python3 comes first on PATH (pyenv).
[ -x "$PREFIX/bin/python3" ] || /usr/bin/python3 -m venv "$PREFIX"
"$PREFIX/bin/pip" install -q --disable-pip-version-check ".$pip_extras"
# Byte-compile now: a root-owned install cannot write .pyc at run time.
"$PREFIX/bin/python3" -m compileall -q "$("$PREFIX/bin/python3" -c 'import pyctr, os; print(os.path.dirname(pyctr.__file__))')"

# A lean launcher (see pyctr.cli.write_launcher): pip's console script is slower.
"$PREFIX/bin/python3" -c 'from pyctr.cli import write_launcher; write_launcher("/usr/local/bin/pyctr")'

pyctr image build busybox >/dev/null

# The network helper (pyctr netd): root's service giving unprivileged users the
# networks /etc/pyctr/policy.toml grants them (no file: nobody). Restarted, so
# that it runs the code just installed.
if [ -d /run/systemd/system ]; then
    install -m 644 runtime/netd/pyctr-netd.service /etc/systemd/system/pyctr-netd.service
    systemctl daemon-reload
    systemctl enable -q pyctr-netd.service
    systemctl restart pyctr-netd.service
else  # no systemd (a container, CI): the plain way
    pyctr netd stop >/dev/null
    pyctr netd serve --daemon >/dev/null
fi
# Say it runs only if it answers a request (one that imports what requests need).
pyctr netd status >/dev/null 2>&1 || { sleep 1; pyctr netd status >/dev/null; } || {
    echo "install.sh: the network helper does not answer (see /run/pyctr/netd.sock.log or journalctl -u pyctr-netd)" >&2
    exit 1
}
echo "install.sh: done: $(pyctr --version), image busybox ready, network helper on /run/pyctr/netd.sock" >&2
