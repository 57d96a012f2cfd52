#!/bin/sh
# The system packages the tests need beyond pip: Orthanc and its DICOMweb plugin (a real PACS the
# PACS tests start on 127.0.0.1 with ports and storage of their own). Debian/Ubuntu; as root, or
# through sudo. Nothing is done when they are already there. The service the package installs is
# left stopped and disabled: the tests run their own server.
set -eu
plugin_present() {
    for folder in /usr/share/orthanc/plugins /usr/lib/orthanc/plugins; do
        [ -e "$folder/libOrthancDicomWeb.so" ] && return 0
    done
    return 1
}
if command -v Orthanc >/dev/null 2>&1 && plugin_present; then
    exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends orthanc orthanc-dicomweb
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now orthanc >/dev/null 2>&1 || true
fi
