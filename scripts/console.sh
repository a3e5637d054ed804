# Sourced, not run: `install_console_tools` gives the console's browser test (server/tests/console.rs
# driving tests/console/console.mjs) what it needs on a fresh machine: Debian's chromium when no
# chromium is on PATH, then puppeteer-core exactly as tests/console/package-lock.json pins it
# (`npm ci`; puppeteer-core downloads no browser). Needs node and npm (scripts/node.sh).

install_console_tools() {
    if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
        local sudo=""
        if [ "$(id -u)" != 0 ]; then
            sudo=sudo
        fi
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
    fi
    npm ci --prefix tests/console --no-audit --no-fund --loglevel=error
}
