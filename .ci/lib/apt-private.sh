# Sourced by the .ci/fetch-* scripts: download Debian packages and unpack them into a
# private folder, never touching the system's apt configuration or installed packages.
# apt runs with its own sources list, lists and cache under DIR/apt and only *downloads*
# the .deb files; dpkg-deb -x unpacks them without registering anything with dpkg.

# The codename of this machine's Debian release: packages that link its glibc come from it.
host_release() {
    (. /etc/os-release && echo "$VERSION_CODENAME")
}

# apt_unpack DIR SUITES PACKAGE...
#   SUITES: space-separated Debian suites to list (e.g. "trixie bookworm").
#   PACKAGE: as apt-get download takes it, e.g. containerd/trixie.
# Leaves the .deb files in DIR/download and their contents in DIR/root, swapped in only
# when every package is unpacked: an interrupted run never leaves a half-extracted tree.
apt_unpack() {
    local dir=$1 suites=$2 suite deb
    shift 2
    mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial" "$dir/download"
    for suite in $suites; do
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main"
    done >"$dir/apt/sources.list"
    local opts=(
        -o "Dir::Etc::sourcelist=$dir/apt/sources.list"
        -o Dir::Etc::sourceparts=/dev/null
        -o "Dir::State::Lists=$dir/apt/lists"
        -o "Dir::Cache=$dir/apt/cache"
        # Don't let a stale system-wide pkgcache from the host's lists leak in.
        -o Dir::Cache::pkgcache=
        -o Dir::Cache::srcpkgcache=
        # The download folder is ours; apt's _apt user could not write there.
        -o APT::Sandbox::User=root
    )
    apt-get "${opts[@]}" -q update >&2
    rm -f "$dir"/download/*.deb
    # apt-get download writes into the current directory.
    (cd "$dir/download" && apt-get "${opts[@]}" -q download "$@" >&2)
    rm -rf "$dir/root.new"
    for deb in "$dir"/download/*.deb; do
        dpkg-deb -x "$deb" "$dir/root.new"
    done
    rm -rf "$dir/root"
    mv "$dir/root.new" "$dir/root"
}
