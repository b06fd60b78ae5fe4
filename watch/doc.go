// Package watch owns noticing that an app's files changed: the source
// tree that `pyhostd serve --reload` watches (D1) and the trigger files
// whose touch rolls an app on a server (D2). It reports debounced
// changes on a channel; it does not reload anything, read config, or
// decide whose files may be watched (the caller passes a StatFunc that
// judges with the owner's rights).
//
// # What is watched
//
// Tree (Options.Root, for --reload): the directory and its
// subdirectories, breadth-first so the shallow code comes first, at most
// MaxDirs directories (default 5,000; the watcher says once when it
// stops there, so a huge tree cannot exhaust the user's inotify watches,
// /proc/sys/fs/inotify/max_user_watches). Directories created later are
// added, and the wanted files already in them reported; removed or moved
// ones are dropped. Never entered: __pycache__, node_modules, venv,
// site-packages, any directory holding a pyvenv.cfg (a virtual
// environment under any name), hidden directories (.git, .venv, .tox…),
// directories an exclude glob matches, and symlinks (never followed, so
// no loops and no escape from the root). The root itself is resolved
// once, at start.
//
// A file counts when it is created, written, removed, renamed (either
// name) or has its attributes changed (so `touch app.py` reloads, as
// with gunicorn's mtime poller), and it is wanted:
//
//  1. an exclude glob matches it: not wanted;
//  2. an include glob matches it: wanted, except a temporary file (below)
//     unless the glob's last element is itself a temporary name
//     (--reload-include '*.swp' watches swap files; '*' does not);
//  3. a temporary file is not wanted: hidden files (".x.swp", emacs's
//     ".#x" locks), "*.swp", "*.swo", "*.swn", "*.swx", "*~", "#*#",
//     vim's "4913" probe, JetBrains' "*___jb_tmp___"/"*___jb_old___",
//     "*.kate-swp";
//  4. DefaultInclude ("*.py") matches it: wanted.
//
// A removed or moved-away directory that was watched also counts. The
// app file itself (a TOML file, or a module outside the root) is watched
// by passing it as a trigger.
//
// Globs (--reload-include/--reload-exclude) use path.Match syntax
// ("*", "?", "[a-z]"), matched against the slash-separated path
// relative to the root. A glob without "/" matches the base name at any
// depth ("*.html", "migrations"); a glob with "/" matches the whole
// relative path ("templates/*.html" is only the top templates
// directory), where an element "**" matches any number of directories,
// none included ("**/templates/*.html", "static/**"). A leading "/"
// anchors a one-element glob at the root ("/settings.toml"). An exclude
// that matches a directory leaves everything under it unwatched.
//
// Triggers (Options.Triggers, SetTriggers: the app's TOML file, a
// Passenger-style tmp/restart.txt): the directory holding each trigger
// is watched, not the file, so a rename over it (an editor's save, git
// pull) or a delete and create does not lose the watch. A trigger fires
// when, at the end of a burst, it exists as a regular file and either an
// event named it as created, written, renamed onto or touched (a `touch`
// fires even when the content is the same, and even within the kernel's
// coarse mtime tick), or its identity (device, inode, size, mtime)
// differs from the last check. Deleting a trigger does not fire;
// creating it again does. A trigger is never followed if it is a
// symlink: it is lstat'ed (Options.Stat, default os.Lstat), and a
// symlink or other non-regular file is logged once and ignored, so a
// root daemon never reports on a file outside the owner's directory
// through a link the owner planted. Its directories are followed, as for
// any path; in system mode pass StatAs(owner), which first checks that
// the owner may search them, as written and as resolved. Every
// PollInterval the triggers' directories are resolved again (one
// filepath.EvalSymlinks per trigger directory): one that did not exist
// is watched once it does, and one whose path now leads elsewhere (a
// switched `current` symlink) is watched anew, its trigger checked. A trigger
// may lie inside the tree too; adding a trigger never fires it. One
// Watcher serves any number of triggers on one inotify instance (a user
// has 128), so a daemon needs one for all its apps.
//
// # Debounce
//
// Events are gathered into one Change until Quiet (200 ms) passes with
// none, or MaxDelay (2 s) after the burst's first event, so an editor's
// save (write, rename, chmod) or a `git checkout` of 200 files is one
// Change and a stream that never pauses still yields one every 2 s. A
// Change lists up to MaxPaths (100) paths, sorted, and counts the rest.
// Changes is unbuffered, and a consumer busy with a reload loses
// nothing: bursts that end meanwhile are merged into the Change waiting
// for it.
//
// # Fallback and limits
//
// If inotify cannot be had (NewWatcher fails: the 128 instances a user
// may have are used up) or a watch cannot be added because the user's
// watch limit is reached (ENOSPC), the watcher says so once and polls
// for good: every PollInterval (1 s) it lstats every wanted file of the
// tree (within MaxDirs) and every trigger, and reports what differs;
// the interval stretches to ten times a scan's duration (at most ten
// PollIntervals) so polling a big tree costs at most about a tenth of a
// CPU. A switch while running reports an Overflow change, since what
// happened in between is unknown. A kernel queue overflow (more than
// /proc/sys/fs/inotify/max_queued_events pending) is reported as an
// Overflow change too, and directories whose creation was lost are
// added. Options.Poll forces polling. Mode says which is in use.
package watch
