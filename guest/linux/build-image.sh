#!/bin/sh
# Builds the `linux` guest image of the qemu engine: OUT/vmlinuz (Debian's
# kernel) and OUT/initrd.img (busybox-static, the virtio modules the
# kernel needs for disks, the project's static test programs and
# guest/linux/init), from the packages deploy/install-deps keeps in its
# cache (linux-image.deb, busybox-static.deb, checked against the
# archive's SHA256 when fetched). Nothing is installed on the host.
#
#   guest/linux/build-image.sh CACHE OUT INIT PROGRAM...
#
# Without the packages in CACHE it says so and exits 0 with no image, so
# a build without deploy/install-deps still succeeds (the qemu tests then
# skip, saying why).
set -eu
cache=$1
out=$2
init=$3
shift 3
for p in linux-image busybox-static; do
	if [ ! -f "$cache/$p.deb" ]; then
		echo "build-image: no $cache/$p.deb; run deploy/install-deps for the linux guest image" >&2
		rm -f "$out/vmlinuz" "$out/initrd.img"
		exit 0
	fi
done
work="$out.work"
rm -rf "$work"
mkdir -p "$work/kernel" "$work/busybox" "$work/root/bin" "$work/root/modules" "$out"
dpkg-deb -x "$cache/linux-image.deb" "$work/kernel"
dpkg-deb -x "$cache/busybox-static.deb" "$work/busybox"
kernel=$(ls "$work"/kernel/boot/vmlinuz-* | head -n 1)
mods=$(ls -d "$work"/kernel/lib/modules/* | head -n 1)/kernel
cp "$work/busybox/bin/busybox" "$work/root/bin/"
ln -s busybox "$work/root/bin/sh"
for p in "$@"; do cp "$p" "$work/root/bin/"; done
cp "$init" "$work/root/init"
chmod 755 "$work/root/init"
# busybox acpid runs /etc/acpi/PWRF/00000080 on a power-button press
mkdir -p "$work/root/etc/acpi/PWRF"
printf '#!/bin/sh\necho "cellmon-guest: power button: powering off"\nsync\npoweroff -f\n' \
	>"$work/root/etc/acpi/PWRF/00000080"
chmod 755 "$work/root/etc/acpi/PWRF/00000080"
# virtio-pci and virtio-blk, and the ACPI power button with evdev, which
# acpid reads (vm stop); each after the modules it depends on (the
# depends= of its .modinfo), as modules/order lists them for /init.
add_module() {
	grep -qx "$1" "$work/root/modules/order" 2>/dev/null && return 0
	f=$(find "$mods" -name "$1.ko" | head -n 1)
	if [ -z "$f" ]; then
		echo "build-image: the kernel package has no module $1" >&2
		exit 1
	fi
	for d in $(strings "$f" | sed -n 's/^depends=//p' | tr ',' ' '); do
		add_module "$d"
	done
	# $f is global: the calls above changed it
	cp "$(find "$mods" -name "$1.ko" | head -n 1)" "$work/root/modules/"
	echo "$1" >>"$work/root/modules/order"
}
for m in virtio_pci virtio_blk evdev button; do
	add_module "$m"
done
(cd "$work/root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -6) >"$out/initrd.img.tmp"
cp "$kernel" "$out/vmlinuz.tmp"
mv "$out/initrd.img.tmp" "$out/initrd.img"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
rm -rf "$work"
echo "build-image: $out: $(basename "$kernel"), initrd $(du -k "$out/initrd.img" | cut -f1) KiB"
