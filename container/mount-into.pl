#!/usr/bin/perl
# mount-into.pl PID PATH [--create]
# mount-into.pl --serve
#
# Clones the mount at PATH (in this process's mount namespace) into the mount
# namespace of process PID, at the same PATH. The local sandbox host runs it
# (as root) when it mounts a layer (a restored snapshot, a dependency cache)
# in a sandbox whose walls are up: their mount namespace is a copy made
# before the mount, and mounts made later do not propagate into it, so
# without this the walls would have to be built again to see it.
#
# open_tree(2) takes a detached copy of the mount; mount_setattr(2) gives it
# nosuid and nodev, as bubblewrap gives every mount of the walls it builds;
# setns(2) enters the walls' mount namespace (which needs a single-threaded
# process: hence a script, not the host's own Node); move_mount(2) attaches
# the copy there. Both views
# share one overlay, so what a command writes is what the host reads. PATH
# need not be a mount: a directory is bound as it is (a spare sandbox renamed
# for the run that takes it over), and with --create the place is made in the
# walls' view first.
# Perl because it is on every Linux the walls run on and starts in a few ms.
#
# With --serve it stays up and takes one request a line on stdin,
# "PID<TAB>PATH<TAB>create-or-empty", answering "ok" or "no" a line on stdout,
# in order: the host starts it once instead of forking itself (a large
# process, held up by every fork) for each mount. Each request is carried out
# in a child of its own, since setns cannot be undone.
use strict;
use warnings;
use Config;
use POSIX ();

# open_tree, move_mount and mount_setattr share one number on every architecture; setns does not.
my %setns = (x86_64 => 308, aarch64 => 268);
my ($arch) = $Config{archname} =~ /^(x86_64|aarch64)/;
die "mount-into: no system call numbers for $Config{archname}\n" unless $arch;
my ($OPEN_TREE, $MOVE_MOUNT, $MOUNT_SETATTR, $SETNS) = (428, 429, 442, $setns{$arch});
my ($AT_FDCWD, $AT_EMPTY_PATH, $OPEN_TREE_CLONE, $OPEN_TREE_CLOEXEC, $CLONE_NEWNS, $MOVE_MOUNT_F_EMPTY_PATH) = (-100, 0x1000, 1, 0x80000, 0x20000, 4);
my ($MOUNT_ATTR_NOSUID, $MOUNT_ATTR_NODEV) = (0x2, 0x4);

sub mount_into {
  my ($pid, $path, $create) = @_;
  # Perl passes a scalar to syscall by address unless it holds a number: strings are copied into variables of their own.
  my $from = "$path";
  my $tree = syscall($OPEN_TREE, $AT_FDCWD, $from, $OPEN_TREE_CLONE | $OPEN_TREE_CLOEXEC);
  die "mount-into: open_tree $path: $!\n" if $tree < 0;
  # struct mount_attr { u64 attr_set, attr_clr, propagation, userns_fd }
  my ($here, $attr) = ("", pack("Q4", $MOUNT_ATTR_NOSUID | $MOUNT_ATTR_NODEV, 0, 0, 0));
  syscall($MOUNT_SETATTR, $tree + 0, $here, $AT_EMPTY_PATH, $attr, length $attr) == 0 or die "mount-into: mount_setattr $path: $!\n";
  open(my $namespace, "<", "/proc/$pid/ns/mnt") or die "mount-into: /proc/$pid/ns/mnt: $!\n";
  syscall($SETNS, fileno($namespace), $CLONE_NEWNS) == 0 or die "mount-into: setns into $pid: $!\n";
  my ($empty, $to) = ("", "$path");
  if ($create && !-d $to) { mkdir($to, 0711) or die "mount-into: mkdir $to: $!\n"; }
  syscall($MOVE_MOUNT, $tree + 0, $empty, $AT_FDCWD, $to, $MOVE_MOUNT_F_EMPTY_PATH) == 0 or die "mount-into: move_mount $path: $!\n";
}

if (@ARGV == 1 && $ARGV[0] eq "--serve") {
  $| = 1;
  while (my $line = <STDIN>) {
    chomp $line;
    my ($pid, $path, $create) = split /\t/, $line, 3;
    my $ok = 0;
    if (defined $path && $pid =~ /^\d+$/ && $path =~ m{^/}) {
      my $child = fork();
      if (defined $child && $child == 0) {
        # _exit: nothing of the parent's (its stdin's buffer) is flushed or read again by the child.
        eval { mount_into($pid, $path, ($create // "") eq "create"); 1 } or do { print STDERR $@; POSIX::_exit(1) };
        POSIX::_exit(0);
      }
      $ok = defined $child && waitpid($child, 0) == $child && $? == 0;
    }
    print $ok ? "ok\n" : "no\n";
  }
  exit 0;
}

my ($pid, $path, $create) = @ARGV;
die "usage: mount-into.pl PID PATH [--create] | mount-into.pl --serve\n" unless defined $path && $pid =~ /^\d+$/ && (!defined $create || $create eq "--create");
mount_into($pid, $path, defined $create);
