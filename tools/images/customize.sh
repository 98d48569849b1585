#!/bin/sh
# Runs INSIDE the guest root filesystem (chroot) during tools/images/build.
# Usage: customize.sh <hostname> <root-fs-uuid> <boot-disk (loop device)> [initramfs-tools|dracut]
# The throwaway SSH public key has been copied to /root/.ssh/authorized_keys by the caller.
set -eu
HOSTNAME_=$1
ROOT_UUID=$2
DISK=$3
INITRAMFS_TOOL=${4:-initramfs-tools}
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin

echo "$HOSTNAME_" > /etc/hostname
cat > /etc/hosts <<EOF
127.0.0.1 localhost
127.0.1.1 $HOSTNAME_
::1 localhost ip6-localhost ip6-loopback
EOF
# Extra test disks are added to fstab by the Molecule create playbook (nofail, 120 s device timeout).
cat > /etc/fstab <<EOF
UUID=$ROOT_UUID / ext4 errors=remount-ro 0 1
EOF

chmod 0700 /root/.ssh
chmod 0600 /root/.ssh/authorized_keys

# Network: DHCP on the qemu user-mode network, fixed resolver of that network.
mkdir -p /etc/systemd/network
cat > /etc/systemd/network/10-dhcp.network <<EOF
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
EOF
rm -f /etc/resolv.conf
echo "nameserver 10.0.2.3" > /etc/resolv.conf

systemctl enable systemd-networkd.service ssh.service serial-getty@ttyS0.service
# Units that only slow a TCG guest down or wait for things that never come.
for u in systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
         apt-daily.service apt-daily-upgrade.service man-db.timer e2scrub_all.timer \
         e2scrub_reap.service fstrim.timer systemd-firstboot.service; do
  systemctl mask "$u" >/dev/null 2>&1 || true
done

# The kernel must stay the one the headers (and any cached dattobd build) were made for: a newer
# kernel installed by apt inside the guest would trigger a DKMS build that cannot find a real
# System.map (Debian ships a dummy one; see docs/testing.md).
apt-mark hold linux-image-amd64 linux-headers-amd64 >/dev/null
for p in $(dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n' 'linux-image-[0-9]*' 'linux-headers-[0-9]*' 2>/dev/null | awk '$1 == "ii" {print $2}'); do
  apt-mark hold "$p" >/dev/null
done

# sshd: key only, no DNS lookups (slow without a resolver under emulation).
mkdir -p /etc/ssh/sshd_config.d
cat > /etc/ssh/sshd_config.d/snapfleet.conf <<EOF
PasswordAuthentication no
PermitRootLogin prohibit-password
UseDNS no
EOF

# Boot: the guest's own GRUB, kernel and initramfs, console on the first serial port.
cat > /etc/default/grub <<EOF
GRUB_DEFAULT=0
GRUB_TIMEOUT=1
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=ttyS0,115200n8 net.ifnames=0"
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
EOF
if [ "$INITRAMFS_TOOL" = dracut ]; then
  # Built in a chroot, a host-only initramfs would hold this build machine's drivers: the image's
  # initramfs is generic (every driver). A guest may switch to host-only (the reboot scenario does).
  mkdir -p /etc/dracut.conf.d
  echo 'hostonly="no"' > /etc/dracut.conf.d/10-snapfleet-image.conf
  dracut -f --regenerate-all
else
  mkdir -p /etc/initramfs-tools/conf.d
  echo "RESUME=none" > /etc/initramfs-tools/conf.d/resume
  update-initramfs -u -k all
fi
grub-install --target=i386-pc --modules="part_msdos ext2" "$DISK"
# grub-mkconfig writes root=UUID=... only when /dev/disk/by-uuid/<uuid> exists (no udev here).
mkdir -p /dev/disk/by-uuid
ln -sf "../../$(basename "${DISK}p1")" "/dev/disk/by-uuid/$ROOT_UUID"
update-grub
rm -f "/dev/disk/by-uuid/$ROOT_UUID"
grep -q "root=UUID=$ROOT_UUID" /boot/grub/grub.cfg || { echo "grub.cfg does not use root=UUID" >&2; exit 1; }

# Package lists stay (roles may check or install packages); downloaded .debs go.
apt-get clean
