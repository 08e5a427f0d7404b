# Sourced by the other scripts: installs the Debian packages fxtwin's build and tests need,
# only when something is missing (so a prepared machine starts at once).
#   build:  build-essential pkg-config (a C compiler for crates that build C code)
#   tests:  sox (the third-party effects the end-to-end tests profile)
fxtwin_need_packages() {
    local missing=()
    command -v cc >/dev/null 2>&1 || missing+=(build-essential)
    command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing missing packages: ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo not found: install Rust with rustup (https://rustup.rs); the toolchain" \
             "version is pinned in rust-toolchain.toml" >&2
        exit 1
    fi
}
