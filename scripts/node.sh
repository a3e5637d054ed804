# Sourced, not run: `install_node_tools` gives the Node SDK suite (tests/node) what it needs on a
# fresh machine: node and npm (Debian's packages when either is missing; node 20 or later, for its
# test runner and the SDK's fetch), then the suite's dependencies exactly as package-lock.json
# pins them (`npm ci`). Used by scripts/test.sh.

install_node_tools() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        local sudo=""
        if [ "$(id -u)" != 0 ]; then
            sudo=sudo
        fi
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm
    fi
    if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
        echo "tests/node needs node 20 or later; found $(node --version)" >&2
        return 1
    fi
    npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
}
