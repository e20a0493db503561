#!/usr/bin/env bash
# Builds rsnorm's release artifacts into dist/ and checks each one:
#   - manylinux2014 (glibc 2.17) abi3 wheels for x86_64 and aarch64, cross-built with zig
#     (`maturin build --zig`), so one wheel per platform serves CPython 3.10+;
#   - musllinux_1_2 x86_64 with --musl (Alpine);
#   - the sdist.
# Checks: `auditwheel show` reports the tag the wheel claims; the wheel is under the size budget;
# the x86_64 wheel installs into a clean venv whose PATH has no cargo/rustc and passes the test suite
# there (against the installed wheel, not the source tree), then runs the CPU backend's tests under
# `qemu-x86_64 -cpu Nehalem` (a pre-AVX CPU), where simd_level() must be the scalar path.
#
#   scripts/build_wheels.sh [--arch x86_64|aarch64|all] [--musl] [--no-test] [--no-qemu]
#                           [--aarch64-python] [--sdist-build] [--python PYTHON]... [--test-only]
#
# --python (repeatable) runs the suite of the x86_64 wheel under each interpreter given (default:
# python3; CONSTRAINTS=FILE in the environment pins its test dependencies, e.g. the oldest NumPy).
# --sdist-build also builds a wheel from the sdist in a clean venv (one more compile). --test-only
# tests the wheels already in dist/; --no-qemu skips the pre-AVX run. --aarch64-python (Debian, root)
# also runs the aarch64 wheel's tests under qemu-aarch64 with Debian's aarch64 CPython.
# Needs Linux with rustup and Python >= 3.10; fetches maturin, ziglang and auditwheel from PyPI (pinned
# below) into .venv-release. Prints one line per artifact: file, tag, size, check result.
set -euo pipefail
cd "$(dirname "$0")/.."

ARCH=all MUSL=0 TEST=1 QEMU=1 AARCH64_PYTHON=0 SDIST_BUILD=0 BUILD=1 PYTHONS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) ARCH=$2; shift ;;
        --musl) MUSL=1 ;;
        --no-test) TEST=0 ;;
        --no-qemu) QEMU=0 ;;
        --aarch64-python) AARCH64_PYTHON=1 ;;
        --sdist-build) SDIST_BUILD=1 ;;
        --python) PYTHONS+=("$2"); shift ;;
        --test-only) BUILD=0 ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "build_wheels.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ ${#PYTHONS[@]} -gt 0 ] || PYTHONS=(python3)
# The test venvs install from another directory: the constraints file by its absolute path.
[ -z "${CONSTRAINTS:-}" ] || CONSTRAINTS=$(readlink -f "$CONSTRAINTS")
case "$ARCH" in x86_64) ARCHES=(x86_64) ;; aarch64) ARCHES=(aarch64) ;; all) ARCHES=(x86_64 aarch64) ;;
    *) echo "build_wheels.sh: --arch must be x86_64, aarch64 or all, got '$ARCH'" >&2; exit 2 ;; esac

# The budget a wheel must stay under (the x86_64 wheel carries AVX2 and AVX-512 paths and the GPU
# backend: 8.2 MB).
BUDGET_BYTES=$((12 * 1024 * 1024))
# --aarch64-python: Debian 12's aarch64 CPython and its libraries (from the arm64 archive) and the
# tests it runs: the CPU backend's, less the bench command line (matplotlib), the fuzz campaign and
# the example's NumPy training loop (each minutes of emulation), and forking beside a busy thread,
# which qemu-user itself does not survive ("Bail out!" from its translator).
AARCH64_DEBS="python3.11-minimal:arm64 libpython3.11-minimal:arm64 libpython3.11-stdlib:arm64
    libc6:arm64 libgcc-s1:arm64 libstdc++6:arm64 zlib1g:arm64 libexpat1:arm64 libffi8:arm64
    libssl3:arm64 libbz2-1.0:arm64 liblzma5:arm64 libsqlite3-0:arm64 libncursesw6:arm64
    libtinfo6:arm64 libreadline8:arm64 libuuid1:arm64 libcrypt1:arm64 libnsl2:arm64 libtirpc3:arm64
    libdb5.3:arm64 libgdbm6:arm64"
# The CPU backend's tests (pytest -k), run under an emulated CPU: the dask backend runs the same
# kernels, the GPU one none of them. Less the bench command line and the example's training loop:
# under qemu they spent minutes in NumPy's matrix products and the peers (165 of 495 s under
# -cpu Nehalem), and the native run above has already run them on the same kernels.
CPU_TESTS="not dask and not gpu and not cluster and not test_cli.py and not test_example.py"
AARCH64_TESTS="$CPU_TESTS and not fuzz and not fork_while_another_thread"
# Pinned build tools: a release is reproducible from this file.
TOOLS=("maturin==1.16.0" "ziglang==0.17.1" "auditwheel==6.8.2")
DIST=dist
SUMMARY=()

say() { echo "== build_wheels: $*"; }

say "tools: ${TOOLS[*]}"
python3 -m venv .venv-release
.venv-release/bin/python -m pip install -q "${TOOLS[@]}"
MATURIN=.venv-release/bin/maturin
AUDITWHEEL=.venv-release/bin/auditwheel
# maturin finds zig through the ziglang package of the interpreter it runs under.
export PATH="$PWD/.venv-release/bin:$PATH"

if [ "$BUILD" = 1 ]; then
rm -rf "$DIST"
mkdir -p "$DIST"

say "sdist"
"$MATURIN" sdist --out "$DIST"
SDIST=$(ls "$DIST"/*.tar.gz)
# Listings are read whole before grep (grep -q closing the pipe early would fail it under pipefail).
listing=$(tar tzf "$SDIST")
for f in LICENSE-MIT LICENSE-APACHE pyproject.toml Cargo.lock; do
    grep -q "/$f\$" <<<"$listing" || { echo "sdist lacks $f" >&2; exit 1; }
done
SUMMARY+=("$(basename "$SDIST")  sdist  $(stat -c %s "$SDIST") bytes  licences, pyproject, Cargo.lock: ok")

build() {  # target, compatibility
    say "wheel $1 ($2)"
    rustup target add "$1" >/dev/null
    "$MATURIN" build --release --zig --target "$1" --compatibility "$2" --out "$DIST"
}

check_wheel() {  # wheel, expected platform tag
    local wheel=$1 tag=$2 size listing
    size=$(stat -c %s "$wheel")
    [ "$size" -le "$BUDGET_BYTES" ] || { echo "$wheel: $size bytes, over the $BUDGET_BYTES budget" >&2; exit 1; }
    case "$wheel" in *"$tag"*) ;; *) echo "$wheel: name lacks the tag $tag" >&2; exit 1 ;; esac
    case "$wheel" in *-cp310-abi3-*) ;; *) echo "$wheel: not an abi3 (cp310) wheel" >&2; exit 1 ;; esac
    listing=$(python3 -m zipfile -l "$wheel")
    for f in LICENSE-APACHE LICENSE-MIT; do
        grep -q "licenses/$f" <<<"$listing" || { echo "$wheel: no $f" >&2; exit 1; }
    done
    # auditwheel reads the extension's symbol versions: the policy it reports must be the claimed one.
    "$AUDITWHEEL" show "$wheel" | tee "$DIST/.auditwheel.txt"
    grep -q "\"$tag\"" "$DIST/.auditwheel.txt" \
        || { echo "$wheel: auditwheel does not confirm $tag" >&2; exit 1; }
    SUMMARY+=("$(basename "$wheel")  $tag  $size bytes  auditwheel, size, licences: ok")
}

for arch in "${ARCHES[@]}"; do
    build "$arch-unknown-linux-gnu" manylinux2014
    check_wheel "$(ls "$DIST"/*manylinux*"$arch".whl | head -1)" "manylinux_2_17_$arch"
done
if [ "$MUSL" = 1 ]; then
    build x86_64-unknown-linux-musl musllinux_1_2
    check_wheel "$(ls "$DIST"/*musllinux*x86_64.whl | head -1)" musllinux_1_2_x86_64
fi
rm -f "$DIST/.auditwheel.txt"
fi
SDIST=$(ls "$DIST"/*.tar.gz)

# The x86_64 wheel installed into a clean venv for `python`: its path. The interpreter itself (not
# a pyenv shim), and a PATH of its directory and the system's: no Rust toolchain.
make_venv() {  # wheel, python
    local wheel=$1 python venv
    python=$("$2" -c 'import sys; print(sys.executable)')
    venv=$(mktemp -d)/venv
    say "clean venv ($("$python" --version 2>&1)), no Rust on PATH: install $(basename "$wheel")" >&2
    env -i HOME="$HOME" PATH="$(dirname "$python"):/usr/local/bin:/usr/bin:/bin" \
        PIP_FIND_LINKS="${PIP_FIND_LINKS:-}" CONSTRAINTS="${CONSTRAINTS:-}" \
        bash -euo pipefail -c '
        ! command -v cargo >/dev/null && ! command -v rustc >/dev/null \
            || { echo "a Rust toolchain is on PATH: the check would not prove a compiler-free install" >&2; exit 1; }
        "$1" -m venv "$2"
        . "$2/bin/activate"
        python -m pip install -q --upgrade pip
        python -m pip install -q ${CONSTRAINTS:+-c "$CONSTRAINTS"} "$3[test]"
        cd "$4"
        # The installed wheel, not python/ of the checkout: the suite imports rsnorm from site-packages.
        python -c "import rsnorm, sys; assert rsnorm.__file__.startswith(sys.prefix), rsnorm.__file__; print(\"rsnorm\", rsnorm.__version__, rsnorm.simd_level(), \"from\", rsnorm.__file__)"
    ' _ "$python" "$venv" "$(readlink -f "$wheel")" "$PWD" >&2 || return 1
    echo "$venv"
}

# The suite in a venv from make_venv, with the same bare environment.
run_suite() {  # venv
    say "the suite in $1 ($("$1/bin/python" --version 2>&1))"
    env -i HOME="$HOME" PATH="$1/bin:/usr/local/bin:/usr/bin:/bin" \
        RSNORM_REQUIRE_GPU="${RSNORM_REQUIRE_GPU:-}" \
        "$1/bin/python" -m pytest -q -p no:cacheprovider tests
}

# The CPU backend's tests in a venv from make_venv under `qemu-x86_64 -cpu Nehalem` (a pre-AVX
# CPU; qemu-user emulates this process only, subprocesses the tests start run natively), at the
# lowest priority and with its own Hypothesis database: it runs beside the native suite, on the core
# that suite's mostly single-threaded Python leaves idle.
run_nehalem() {  # venv
    local level run=(qemu-x86_64 -cpu Nehalem) where="under Nehalem"
    # NumPy 2.3 and 2.4 died of SIGILL at import under this emulation on the Zen 5 VM of stop 55
    # (they had run on the Zen 3), before rsnorm loads: there the same tests run natively on
    # rsnorm's scalar path, and say so.
    if ! "${run[@]}" "$1/bin/python" -c 'import numpy' >/dev/null 2>&1; then
        echo "WARNING: NumPy does not import under qemu-x86_64 -cpu Nehalem on this host; the CPU backend's tests ran natively with RSNORM_SIMD=scalar instead"
        run=(env RSNORM_SIMD=scalar) where="with RSNORM_SIMD=scalar"
    fi
    level=$("${run[@]}" "$1/bin/python" -c 'import rsnorm; print(rsnorm.simd_level())')
    [ "$level" = scalar ] || { echo "$where simd_level() is '$level', expected 'scalar'" >&2; return 1; }
    HYPOTHESIS_STORAGE_DIRECTORY=$(mktemp -d) nice -n 19 "${run[@]}" "$1/bin/python" \
        -m pytest -q -p no:cacheprovider tests -k "$CPU_TESTS"
}

if [ "$TEST" = 1 ]; then
    X86=$(ls "$DIST"/*manylinux*x86_64.whl 2>/dev/null | head -1 || true)
    if [ -n "$X86" ]; then
        nehalem=
        for python in "${PYTHONS[@]}"; do
            # `|| exit 1`: errexit does not reach into a command substitution.
            venv=$(make_venv "$X86" "$python") || { echo "installing the wheel failed under $python" >&2; exit 1; }
            if [ -z "$nehalem" ] && [ "$QEMU" = 1 ] && command -v qemu-x86_64 >/dev/null; then
                say "pre-AVX CPU: qemu-x86_64 -cpu Nehalem, the CPU backend's tests, beside the suite (log: $DIST/.nehalem.log)"
                run_nehalem "$venv" > "$DIST/.nehalem.log" 2>&1 &
                nehalem=$!
            elif [ "$QEMU" = 1 ] && ! command -v qemu-x86_64 >/dev/null; then
                echo "WARNING: qemu-x86_64 not installed (Debian: qemu-user); the pre-AVX check did not run"
            fi
            run_suite "$venv" || {
                echo "the suite failed under $python" >&2
                [ -z "$nehalem" ] || kill "$nehalem" 2>/dev/null || true
                exit 1
            }
            SUMMARY+=("$(basename "$X86")  suite under $("$python" --version 2>&1) in a venv without Rust: passed")
        done
        if [ -n "$nehalem" ]; then
            say "pre-AVX CPU: the Nehalem run's output"
            status=0
            wait "$nehalem" || status=$?
            cat "$DIST/.nehalem.log"
            native_scalar=0
            ! grep -q '^WARNING: NumPy does not import under qemu' "$DIST/.nehalem.log" || native_scalar=1
            rm -f "$DIST/.nehalem.log"
            [ "$status" = 0 ] || { echo "the CPU backend's tests failed under qemu-x86_64 -cpu Nehalem" >&2; exit 1; }
            if [ "$native_scalar" = 1 ]; then
                SUMMARY+=("$(basename "$X86")  RSNORM_SIMD=scalar (NumPy does not start under qemu Nehalem here): CPU-backend suite passed")
            else
                SUMMARY+=("$(basename "$X86")  qemu-x86_64 -cpu Nehalem: simd_level() = scalar, CPU-backend suite passed")
            fi
        fi
    fi
    AARCH=$(ls "$DIST"/*manylinux*aarch64.whl 2>/dev/null | head -1 || true)
    if [ -n "$AARCH" ] && [ "$AARCH64_PYTHON" = 1 ]; then
        # Debian 12's aarch64 CPython unpacked into a sysroot (no foreign packages installed), the
        # wheel and its test dependencies for aarch64 beside it, run under qemu-aarch64: the CPU
        # backend's tests.
        say "aarch64: the wheel under qemu-aarch64 with Debian's aarch64 CPython 3.11"
        root=.venv-release/aarch64
        if [ ! -x "$root/sysroot/usr/bin/python3.11" ]; then
            dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
            apt-get update -qq
            mkdir -p "$root/debs" "$root/sysroot"
            # shellcheck disable=SC2086
            (cd "$root/debs" && apt-get download -qq -o APT::Sandbox::User=root $AARCH64_DEBS)
            for deb in "$root"/debs/*.deb; do dpkg-deb -x "$deb" "$root/sysroot"; done
        fi
        rm -rf "$root/site"
        .venv-release/bin/python -m pip install -q --target "$root/site" --platform manylinux2014_aarch64 \
            --python-version 3.11 --only-binary=:all: "$AARCH" numpy scipy pytest hypothesis
        python="qemu-aarch64 -L $PWD/$root/sysroot $PWD/$root/sysroot/usr/bin/python3.11"
        # RSNORM_TEST_PYTHON: the tests' own subprocesses run emulated too.
        PYTHONPATH="$PWD/$root/site" RSNORM_TEST_PYTHON="$python" $python \
            -m pytest -q -p no:cacheprovider tests -k "$AARCH64_TESTS"
        SUMMARY+=("$(basename "$AARCH")  qemu-aarch64, CPython 3.11: CPU-backend suite passed")
    elif [ -n "$AARCH" ]; then
        # auditwheel (above) read the extension's architecture and symbol versions; the kernels
        # themselves run under qemu-aarch64 in .ci/run's core tests (--aarch64-python runs the wheel).
        SUMMARY+=("$(basename "$AARCH")  aarch64: auditwheel-checked; rsnorm-core's tests run under qemu-aarch64 in CI")
    fi
fi

if [ "$SDIST_BUILD" = 1 ]; then
    say "the sdist builds in a clean venv"
    venv=$(mktemp -d)/venv
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip wheel -q --no-deps "$SDIST" -w "$(dirname "$venv")"
    "$venv/bin/python" -m pip install -q "$(dirname "$venv")"/*.whl
    # From / so that the import is the installed package's, not the checkout's.
    (cd / && "$venv/bin/python" -c '
import numpy as np, rsnorm
y = rsnorm.layer_norm(np.arange(12.0).reshape(3, 4))
assert np.allclose(y.mean(-1), 0) and np.allclose(y.var(-1), 1, rtol=1e-4), y
print("rsnorm", rsnorm.__version__, "from the sdist:", rsnorm.__file__)')
    SUMMARY+=("$(basename "$SDIST")  built into a wheel in a clean venv, installed, imports and computes: ok")
fi

say "artifacts"
printf '%s\n' "${SUMMARY[@]}"
