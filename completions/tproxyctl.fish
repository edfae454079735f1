# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_tproxyctl_global_optspecs
    string join \n q/quiet log-level= context= no-config= api-timeout= h/help V/version
end

function __fish_tproxyctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_tproxyctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_tproxyctl_using_subcommand
    set -l cmd (__fish_tproxyctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c tproxyctl -n "__fish_tproxyctl_needs_command" -l log-level -d 'kumactl\'s own log level (off, info, debug)' -r
complete -c tproxyctl -n "__fish_tproxyctl_needs_command" -l context -d 'kumactl\'s control-plane context' -r
complete -c tproxyctl -n "__fish_tproxyctl_needs_command" -l no-config -d 'kumactl: do not read its own configuration' -r
complete -c tproxyctl -n "__fish_tproxyctl_needs_command" -l api-timeout -d 'kumactl\'s control-plane API timeout' -r
complete -c tproxyctl -n "__fish_tproxyctl_needs_command" -s q -l quiet -d 'Print errors only: no progress, notes or warnings on stderr (data on stdout is unchanged)'
complete -c tproxyctl -n "__fish_tproxyctl_needs_command" -s h -l help -d 'Print help'
complete -c tproxyctl -n "__fish_tproxyctl_needs_command" -s V -l version -d 'Print version'
complete -c tproxyctl -n "__fish_tproxyctl_needs_command" -f -a "install" -d 'Install the transparent proxy rules or the validator'
complete -c tproxyctl -n "__fish_tproxyctl_needs_command" -f -a "uninstall" -d 'Remove what an install put on the host'
complete -c tproxyctl -n "__fish_tproxyctl_needs_command" -f -a "verify" -d 'Prove, end to end in a throwaway network namespace, that the installed rules redirect what they should'
complete -c tproxyctl -n "__fish_tproxyctl_needs_command" -f -a "status" -d 'Show what is installed, by which backend, rule counters and drift against the receipt'
complete -c tproxyctl -n "__fish_tproxyctl_needs_command" -f -a "generate" -d 'Generate resources that match the installed rules'
complete -c tproxyctl -n "__fish_tproxyctl_needs_command" -f -a "forwarder" -d 'Run the bundled forwarder on the redirect ports'
complete -c tproxyctl -n "__fish_tproxyctl_needs_command" -f -a "completion" -d 'Print a shell completion script'
complete -c tproxyctl -n "__fish_tproxyctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and not __fish_seen_subcommand_from transparent-proxy transparent-proxy-validator help" -l log-level -d 'kumactl\'s own log level (off, info, debug)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and not __fish_seen_subcommand_from transparent-proxy transparent-proxy-validator help" -l context -d 'kumactl\'s control-plane context' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and not __fish_seen_subcommand_from transparent-proxy transparent-proxy-validator help" -l no-config -d 'kumactl: do not read its own configuration' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and not __fish_seen_subcommand_from transparent-proxy transparent-proxy-validator help" -l api-timeout -d 'kumactl\'s control-plane API timeout' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and not __fish_seen_subcommand_from transparent-proxy transparent-proxy-validator help" -s q -l quiet -d 'Print errors only: no progress, notes or warnings on stderr (data on stdout is unchanged)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and not __fish_seen_subcommand_from transparent-proxy transparent-proxy-validator help" -s h -l help -d 'Print help'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and not __fish_seen_subcommand_from transparent-proxy transparent-proxy-validator help" -s V -l version -d 'Print version'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and not __fish_seen_subcommand_from transparent-proxy transparent-proxy-validator help" -f -a "transparent-proxy" -d 'Install the transparent proxy iptables rules (kumactl-compatible flags)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and not __fish_seen_subcommand_from transparent-proxy transparent-proxy-validator help" -f -a "transparent-proxy-validator" -d 'Check that the hairpin redirect works (kumactl-compatible validator)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and not __fish_seen_subcommand_from transparent-proxy transparent-proxy-validator help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l config -d 'Configuration file (YAML or JSON), or - for stdin. Repeatable; later files win, lists replace, objects merge' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l config-file -d 'Deprecated alias of --config' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l kuma-dp-user -d 'User name or UID that runs kuma-dp (default: UID 5678, then user kuma-dp)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l kuma-dp-uid -d 'Deprecated alias of --kuma-dp-user' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l redirect-inbound -d 'Redirect inbound TCP (should be disabled for Gateway data plane proxies)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l redirect-inbound-port -d 'Port inbound TCP is redirected to (must match the Dataplane\'s redirectPortInbound) [default: 15006]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l redirect-outbound-port -d 'Port outbound TCP is redirected to [default: 15001]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l exclude-inbound-ports -d 'Comma-separated inbound destination ports that are not redirected (each use replaces the list)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l exclude-outbound-ports -d 'Comma-separated outbound TCP destination ports that are not redirected (each use replaces the list)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l exclude-inbound-ips -d 'Source IPs or CIDRs whose inbound traffic is not redirected (comma lists allowed, repeatable)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l exclude-outbound-ips -d 'Destination IPs or CIDRs whose outbound traffic is not redirected (comma lists allowed, repeatable)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l exclude-outbound-ports-for-uids -d 'Outbound exclusion by owner: <protocol:>?<ports:>?<uids>, e.g. tcp:22,80:1000 or 53:106-108 (repeatable)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l redirect-inbound-insert-instead-of-append -d 'Insert the PREROUTING jump to KUMA_MESH_INBOUND at the top instead of appending it' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l redirect-outbound-insert-instead-of-append -d 'Insert the OUTPUT jump to KUMA_MESH_OUTBOUND at the top instead of appending it' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l redirect-dns -d 'Redirect UDP/53 sent to the name servers of resolv.conf to the DNS port' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l redirect-all-dns-traffic -d 'Redirect all UDP/53 to the DNS port (implies DNS redirection)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l redirect-dns-port -d 'Port of the DNS proxy [default: 15053]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l skip-dns-conntrack-zone-split -d 'Do not write the raw-table conntrack zone rules for DNS' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l vnet -d 'Virtual network to capture, ifaceNameOrPrefix+:CIDR (e.g. docker0:172.17.0.0/16); repeatable' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l ip-family-mode -d 'IP family mode: dualstack or ipv4 (case-insensitive) [default: dualstack]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l iptables-logs -d 'Add LOG rules to nat PREROUTING and OUTPUT (kernel log, not rate-limited)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l disable-comments -d 'Write rules without -m comment (they are still found by the receipt)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l drop-invalid-packets -d 'Drop packets in conntrack state INVALID (mangle PREROUTING)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l dry-run -d 'Print what would be done and change nothing on the host' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l verbose -d 'Long option names and section headers in the rules; more messages' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l store-firewalld -d 'Persist the rules in /etc/firewalld/direct.xml' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l wait -d 'Seconds to wait for the xtables lock (legacy iptables-restore; 0: no --wait) and for another install/uninstall in this network namespace [default: 5]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l wait-interval -d 'Microseconds between xtables lock attempts (legacy only) [default: 0]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l max-retries -d 'Retries of the apply step [default: 4]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l sleep-between-retries -d 'Pause between retries, e.g. 2s or 500ms [default: 2s]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l iptables-executables -d 'Custom iptables binaries: name:path[,name:path...] (iptables, iptables-save, iptables-restore, ip6tables…)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l firewalld-direct-file -d 'firewalld direct configuration written by --store-firewalld [default: /etc/firewalld/direct.xml]' -r -F
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l ebpf-enabled -d 'Redirect with eBPF programs (cgroup hooks and sk_lookup) instead of iptables rules' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l ebpf-instance-ip -d 'IP address of this instance (required with --ebpf-enabled)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l ebpf-programs-source-path -d 'Where the BPF programs are written for inspection [default: /tmp/kuma-ebpf]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l ebpf-bpffs-path -d 'BPF filesystem the links and maps are pinned in; mounted if none is there [default: /run/kuma/bpf]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l ebpf-cgroup-path -d 'cgroup (v2) the programs attach to [default: the cgroup2 mount point, a root: see --ebpf-allow-cgroup-root]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l ebpf-tc-attach-iface -d 'Redirect inbound traffic arriving on this interface only [default: every interface but loopback]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l ebpf-allow-cgroup-root -d 'Allow attaching to a cgroup root (every process of the machine is then in scope)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l receipt -d 'Install receipt (JSON), or `none` to keep no state [default: /var/lib/tproxyctl/receipt.json]' -r -F
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l from-receipt -d 'Re-apply exactly the configuration an install receipt recorded [default: the --receipt file]; no configuration flag, --config file or KUMA_TRANSPARENT_PROXY_* variable is read' -r -F
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -s o -l output -d 'With --dry-run: the planned rules as text (kumactl\'s format) or JSON' -r -f -a "text\t''
json\t''"
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l log-level -d 'kumactl\'s own log level (off, info, debug)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l context -d 'kumactl\'s control-plane context' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l no-config -d 'kumactl: do not read its own configuration' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -l api-timeout -d 'kumactl\'s control-plane API timeout' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -s q -l quiet -d 'Print errors only: no progress, notes or warnings on stderr (data on stdout is unchanged)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy" -s V -l version -d 'Print version'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy-validator" -l ip-family-mode -d 'IP family mode: dualstack or ipv4' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy-validator" -l validation-server-port -d 'Port the validation server listens on (the inbound redirect port)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy-validator" -l transparent-proxy-config -d 'kuma-dp style transparent-proxy config (file or -); overrides both flags above. Repeatable' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy-validator" -l config-file -d 'kumactl\'s root --config-file (its own configuration); accepted and ignored with a warning' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy-validator" -l log-level -d 'kumactl\'s own log level (off, info, debug)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy-validator" -l context -d 'kumactl\'s control-plane context' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy-validator" -l no-config -d 'kumactl: do not read its own configuration' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy-validator" -l api-timeout -d 'kumactl\'s control-plane API timeout' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy-validator" -s q -l quiet -d 'Print errors only: no progress, notes or warnings on stderr (data on stdout is unchanged)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy-validator" -s h -l help -d 'Print help'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from transparent-proxy-validator" -s V -l version -d 'Print version'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from help" -f -a "transparent-proxy" -d 'Install the transparent proxy iptables rules (kumactl-compatible flags)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from help" -f -a "transparent-proxy-validator" -d 'Check that the hairpin redirect works (kumactl-compatible validator)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand install; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and not __fish_seen_subcommand_from transparent-proxy ebpf help" -l log-level -d 'kumactl\'s own log level (off, info, debug)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and not __fish_seen_subcommand_from transparent-proxy ebpf help" -l context -d 'kumactl\'s control-plane context' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and not __fish_seen_subcommand_from transparent-proxy ebpf help" -l no-config -d 'kumactl: do not read its own configuration' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and not __fish_seen_subcommand_from transparent-proxy ebpf help" -l api-timeout -d 'kumactl\'s control-plane API timeout' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and not __fish_seen_subcommand_from transparent-proxy ebpf help" -s q -l quiet -d 'Print errors only: no progress, notes or warnings on stderr (data on stdout is unchanged)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and not __fish_seen_subcommand_from transparent-proxy ebpf help" -s h -l help -d 'Print help'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and not __fish_seen_subcommand_from transparent-proxy ebpf help" -s V -l version -d 'Print version'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and not __fish_seen_subcommand_from transparent-proxy ebpf help" -f -a "transparent-proxy" -d 'Remove the transparent proxy rules, and only those'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and not __fish_seen_subcommand_from transparent-proxy ebpf help" -f -a "ebpf" -d 'Detach and unpin the eBPF programs of an eBPF-mode install (kumactl\'s `uninstall ebpf`)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and not __fish_seen_subcommand_from transparent-proxy ebpf help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l config -d 'Configuration file (YAML or JSON), or - for stdin. Repeatable; later files win, lists replace, objects merge' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l config-file -d 'Deprecated alias of --config' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l kuma-dp-user -d 'User name or UID that runs kuma-dp (default: UID 5678, then user kuma-dp)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l kuma-dp-uid -d 'Deprecated alias of --kuma-dp-user' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l redirect-inbound -d 'Redirect inbound TCP (should be disabled for Gateway data plane proxies)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l redirect-inbound-port -d 'Port inbound TCP is redirected to (must match the Dataplane\'s redirectPortInbound) [default: 15006]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l redirect-outbound-port -d 'Port outbound TCP is redirected to [default: 15001]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l exclude-inbound-ports -d 'Comma-separated inbound destination ports that are not redirected (each use replaces the list)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l exclude-outbound-ports -d 'Comma-separated outbound TCP destination ports that are not redirected (each use replaces the list)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l exclude-inbound-ips -d 'Source IPs or CIDRs whose inbound traffic is not redirected (comma lists allowed, repeatable)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l exclude-outbound-ips -d 'Destination IPs or CIDRs whose outbound traffic is not redirected (comma lists allowed, repeatable)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l exclude-outbound-ports-for-uids -d 'Outbound exclusion by owner: <protocol:>?<ports:>?<uids>, e.g. tcp:22,80:1000 or 53:106-108 (repeatable)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l redirect-inbound-insert-instead-of-append -d 'Insert the PREROUTING jump to KUMA_MESH_INBOUND at the top instead of appending it' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l redirect-outbound-insert-instead-of-append -d 'Insert the OUTPUT jump to KUMA_MESH_OUTBOUND at the top instead of appending it' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l redirect-dns -d 'Redirect UDP/53 sent to the name servers of resolv.conf to the DNS port' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l redirect-all-dns-traffic -d 'Redirect all UDP/53 to the DNS port (implies DNS redirection)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l redirect-dns-port -d 'Port of the DNS proxy [default: 15053]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l skip-dns-conntrack-zone-split -d 'Do not write the raw-table conntrack zone rules for DNS' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l vnet -d 'Virtual network to capture, ifaceNameOrPrefix+:CIDR (e.g. docker0:172.17.0.0/16); repeatable' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l ip-family-mode -d 'IP family mode: dualstack or ipv4 (case-insensitive) [default: dualstack]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l iptables-logs -d 'Add LOG rules to nat PREROUTING and OUTPUT (kernel log, not rate-limited)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l disable-comments -d 'Write rules without -m comment (they are still found by the receipt)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l drop-invalid-packets -d 'Drop packets in conntrack state INVALID (mangle PREROUTING)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l dry-run -d 'Print what would be done and change nothing on the host' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l verbose -d 'Long option names and section headers in the rules; more messages' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l store-firewalld -d 'Persist the rules in /etc/firewalld/direct.xml' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l wait -d 'Seconds to wait for the xtables lock (legacy iptables-restore; 0: no --wait) and for another install/uninstall in this network namespace [default: 5]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l wait-interval -d 'Microseconds between xtables lock attempts (legacy only) [default: 0]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l max-retries -d 'Retries of the apply step [default: 4]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l sleep-between-retries -d 'Pause between retries, e.g. 2s or 500ms [default: 2s]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l iptables-executables -d 'Custom iptables binaries: name:path[,name:path...] (iptables, iptables-save, iptables-restore, ip6tables…)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l firewalld-direct-file -d 'firewalld direct configuration written by --store-firewalld [default: /etc/firewalld/direct.xml]' -r -F
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l ebpf-enabled -d 'Redirect with eBPF programs (cgroup hooks and sk_lookup) instead of iptables rules' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l ebpf-instance-ip -d 'IP address of this instance (required with --ebpf-enabled)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l ebpf-programs-source-path -d 'Where the BPF programs are written for inspection [default: /tmp/kuma-ebpf]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l ebpf-bpffs-path -d 'BPF filesystem the links and maps are pinned in; mounted if none is there [default: /run/kuma/bpf]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l ebpf-cgroup-path -d 'cgroup (v2) the programs attach to [default: the cgroup2 mount point, a root: see --ebpf-allow-cgroup-root]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l ebpf-tc-attach-iface -d 'Redirect inbound traffic arriving on this interface only [default: every interface but loopback]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l ebpf-allow-cgroup-root -d 'Allow attaching to a cgroup root (every process of the machine is then in scope)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l receipt -d 'Install receipt (JSON), or `none` to keep no state [default: /var/lib/tproxyctl/receipt.json]' -r -F
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l log-level -d 'kumactl\'s own log level (off, info, debug)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l context -d 'kumactl\'s control-plane context' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l no-config -d 'kumactl: do not read its own configuration' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -l api-timeout -d 'kumactl\'s control-plane API timeout' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -s q -l quiet -d 'Print errors only: no progress, notes or warnings on stderr (data on stdout is unchanged)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -s h -l help -d 'Print help'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from transparent-proxy" -s V -l version -d 'Print version'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from ebpf" -l bpffs-path -l ebpf-bpffs-path -d 'BPF filesystem the programs were pinned in (used when there is no receipt) [default: /run/kuma/bpf]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from ebpf" -l dry-run -d 'Print what would be removed and change nothing' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from ebpf" -l receipt -d 'Install receipt (JSON), or `none` to keep no state [default: /var/lib/tproxyctl/receipt.json]' -r -F
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from ebpf" -l timeout -d 'kumactl\'s Kubernetes cleanup-job settings: accepted, ignored (there is no job on a VM)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from ebpf" -l namespace -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from ebpf" -l remove-only -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from ebpf" -l cleanup-image-registry -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from ebpf" -l cleanup-image-repository -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from ebpf" -l cleanup-image-tag -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from ebpf" -l cleanup-job-name -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from ebpf" -l log-level -d 'kumactl\'s own log level (off, info, debug)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from ebpf" -l context -d 'kumactl\'s control-plane context' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from ebpf" -l no-config -d 'kumactl: do not read its own configuration' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from ebpf" -l api-timeout -d 'kumactl\'s control-plane API timeout' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from ebpf" -s q -l quiet -d 'Print errors only: no progress, notes or warnings on stderr (data on stdout is unchanged)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from ebpf" -s h -l help -d 'Print help'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from ebpf" -s V -l version -d 'Print version'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from help" -f -a "transparent-proxy" -d 'Remove the transparent proxy rules, and only those'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from help" -f -a "ebpf" -d 'Detach and unpin the eBPF programs of an eBPF-mode install (kumactl\'s `uninstall ebpf`)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand uninstall; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand verify" -l receipt -d 'Install receipt (JSON), or `none` to keep no state [default: /var/lib/tproxyctl/receipt.json]' -r -F
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand verify" -s o -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand verify" -l log-level -d 'kumactl\'s own log level (off, info, debug)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand verify" -l context -d 'kumactl\'s control-plane context' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand verify" -l no-config -d 'kumactl: do not read its own configuration' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand verify" -l api-timeout -d 'kumactl\'s control-plane API timeout' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand verify" -s q -l quiet -d 'Print errors only: no progress, notes or warnings on stderr (data on stdout is unchanged)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand verify" -s V -l version -d 'Print version'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand status" -l receipt -d 'Install receipt (JSON), or `none` to keep no state [default: /var/lib/tproxyctl/receipt.json]' -r -F
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand status" -s o -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand status" -l dataplane -d 'Compare a Dataplane file\'s transparentProxying section with the installed rules' -r -F
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand status" -l log-level -d 'kumactl\'s own log level (off, info, debug)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand status" -l context -d 'kumactl\'s control-plane context' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand status" -l no-config -d 'kumactl: do not read its own configuration' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand status" -l api-timeout -d 'kumactl\'s control-plane API timeout' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand status" -s q -l quiet -d 'Print errors only: no progress, notes or warnings on stderr (data on stdout is unchanged)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand status" -s h -l help -d 'Print help'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand status" -s V -l version -d 'Print version'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and not __fish_seen_subcommand_from dataplane help" -l log-level -d 'kumactl\'s own log level (off, info, debug)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and not __fish_seen_subcommand_from dataplane help" -l context -d 'kumactl\'s control-plane context' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and not __fish_seen_subcommand_from dataplane help" -l no-config -d 'kumactl: do not read its own configuration' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and not __fish_seen_subcommand_from dataplane help" -l api-timeout -d 'kumactl\'s control-plane API timeout' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and not __fish_seen_subcommand_from dataplane help" -s q -l quiet -d 'Print errors only: no progress, notes or warnings on stderr (data on stdout is unchanged)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and not __fish_seen_subcommand_from dataplane help" -s h -l help -d 'Print help'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and not __fish_seen_subcommand_from dataplane help" -s V -l version -d 'Print version'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and not __fish_seen_subcommand_from dataplane help" -f -a "dataplane" -d 'Render the Universal Dataplane resource that matches the rules'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and not __fish_seen_subcommand_from dataplane help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l config -d 'Configuration file (YAML or JSON), or - for stdin. Repeatable; later files win, lists replace, objects merge' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l config-file -d 'Deprecated alias of --config' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l kuma-dp-user -d 'User name or UID that runs kuma-dp (default: UID 5678, then user kuma-dp)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l kuma-dp-uid -d 'Deprecated alias of --kuma-dp-user' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l redirect-inbound -d 'Redirect inbound TCP (should be disabled for Gateway data plane proxies)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l redirect-inbound-port -d 'Port inbound TCP is redirected to (must match the Dataplane\'s redirectPortInbound) [default: 15006]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l redirect-outbound-port -d 'Port outbound TCP is redirected to [default: 15001]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l exclude-inbound-ports -d 'Comma-separated inbound destination ports that are not redirected (each use replaces the list)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l exclude-outbound-ports -d 'Comma-separated outbound TCP destination ports that are not redirected (each use replaces the list)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l exclude-inbound-ips -d 'Source IPs or CIDRs whose inbound traffic is not redirected (comma lists allowed, repeatable)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l exclude-outbound-ips -d 'Destination IPs or CIDRs whose outbound traffic is not redirected (comma lists allowed, repeatable)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l exclude-outbound-ports-for-uids -d 'Outbound exclusion by owner: <protocol:>?<ports:>?<uids>, e.g. tcp:22,80:1000 or 53:106-108 (repeatable)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l redirect-inbound-insert-instead-of-append -d 'Insert the PREROUTING jump to KUMA_MESH_INBOUND at the top instead of appending it' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l redirect-outbound-insert-instead-of-append -d 'Insert the OUTPUT jump to KUMA_MESH_OUTBOUND at the top instead of appending it' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l redirect-dns -d 'Redirect UDP/53 sent to the name servers of resolv.conf to the DNS port' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l redirect-all-dns-traffic -d 'Redirect all UDP/53 to the DNS port (implies DNS redirection)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l redirect-dns-port -d 'Port of the DNS proxy [default: 15053]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l skip-dns-conntrack-zone-split -d 'Do not write the raw-table conntrack zone rules for DNS' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l vnet -d 'Virtual network to capture, ifaceNameOrPrefix+:CIDR (e.g. docker0:172.17.0.0/16); repeatable' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l ip-family-mode -d 'IP family mode: dualstack or ipv4 (case-insensitive) [default: dualstack]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l iptables-logs -d 'Add LOG rules to nat PREROUTING and OUTPUT (kernel log, not rate-limited)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l disable-comments -d 'Write rules without -m comment (they are still found by the receipt)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l drop-invalid-packets -d 'Drop packets in conntrack state INVALID (mangle PREROUTING)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l receipt -d 'Install receipt (JSON), or `none` to keep no state [default: /var/lib/tproxyctl/receipt.json]' -r -F
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l name -d 'Dataplane name' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l mesh -d 'Mesh the Dataplane belongs to (with --template: used when the template sets none) [default: default]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l address -d 'networking.address: the IP address other data plane proxies reach this one at (not 0.0.0.0 or ::)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l port -d 'Inbound port the proxy listens on for the service' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l service-port -d 'Port the application listens on, when it differs from --port' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l service-address -d 'Address the application listens on (e.g. 127.0.0.1)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l service -d 'The inbound\'s kuma.io/service tag' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l tag -d 'Another inbound tag (repeatable)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l protocol -d 'The inbound\'s kuma.io/protocol tag: http, http2, grpc, tcp, tls or kafka' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l reachable-service -d 'A kuma.io/service this proxy may reach (repeatable, comma lists allowed)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l reachable-backend -d 'A backend this proxy may reach: kind=MeshService,name=redis[,namespace=NS][,port=6379] or kind=MeshService,labels=KEY:VALUE[,labels=KEY:VALUE…] (repeatable)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l reachable-backends -d '`none`: this proxy reaches no backend (renders reachableBackends: {})' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l transparent-proxying -d 'Write the transparentProxying section (use --transparent-proxying=false for a Dataplane without it)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l template -d 'Render this kuma-dp Dataplane template (file, or - for stdin) instead of using the flags above' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -s v -l dataplane-var -d 'Template variable (repeatable; a comma list a=1,b=2 is allowed; dotted keys nest: tags.version=v1)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -s o -l output -d 'Output format' -r -f -a "yaml\t'The Dataplane as YAML, keys in Kuma\'s order'
json\t'The Dataplane as JSON'
kubernetes-annotations\t'The Kubernetes Pod annotations for reachable services and backends'"
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l check -d 'Compare this Dataplane file\'s transparentProxying with the installed rules (or the configuration); exit 1 on a difference' -r -F
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l log-level -d 'kumactl\'s own log level (off, info, debug)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l context -d 'kumactl\'s control-plane context' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l no-config -d 'kumactl: do not read its own configuration' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l api-timeout -d 'kumactl\'s control-plane API timeout' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -l require-service-tag -d 'Also apply the rules of Kuma control planes before 2.14: at least one inbound (or a gateway), and a kuma.io/service tag on every inbound'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -s q -l quiet -d 'Print errors only: no progress, notes or warnings on stderr (data on stdout is unchanged)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from dataplane" -s V -l version -d 'Print version'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from help" -f -a "dataplane" -d 'Render the Universal Dataplane resource that matches the rules'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand generate; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l config -d 'Configuration file (YAML or JSON), or - for stdin. Repeatable; later files win, lists replace, objects merge' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l config-file -d 'Deprecated alias of --config' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l kuma-dp-user -d 'User name or UID that runs kuma-dp (default: UID 5678, then user kuma-dp)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l kuma-dp-uid -d 'Deprecated alias of --kuma-dp-user' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l redirect-inbound -d 'Redirect inbound TCP (should be disabled for Gateway data plane proxies)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l redirect-inbound-port -d 'Port inbound TCP is redirected to (must match the Dataplane\'s redirectPortInbound) [default: 15006]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l redirect-outbound-port -d 'Port outbound TCP is redirected to [default: 15001]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l exclude-inbound-ports -d 'Comma-separated inbound destination ports that are not redirected (each use replaces the list)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l exclude-outbound-ports -d 'Comma-separated outbound TCP destination ports that are not redirected (each use replaces the list)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l exclude-inbound-ips -d 'Source IPs or CIDRs whose inbound traffic is not redirected (comma lists allowed, repeatable)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l exclude-outbound-ips -d 'Destination IPs or CIDRs whose outbound traffic is not redirected (comma lists allowed, repeatable)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l exclude-outbound-ports-for-uids -d 'Outbound exclusion by owner: <protocol:>?<ports:>?<uids>, e.g. tcp:22,80:1000 or 53:106-108 (repeatable)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l redirect-inbound-insert-instead-of-append -d 'Insert the PREROUTING jump to KUMA_MESH_INBOUND at the top instead of appending it' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l redirect-outbound-insert-instead-of-append -d 'Insert the OUTPUT jump to KUMA_MESH_OUTBOUND at the top instead of appending it' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l redirect-dns -d 'Redirect UDP/53 sent to the name servers of resolv.conf to the DNS port' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l redirect-all-dns-traffic -d 'Redirect all UDP/53 to the DNS port (implies DNS redirection)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l redirect-dns-port -d 'Port of the DNS proxy [default: 15053]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l skip-dns-conntrack-zone-split -d 'Do not write the raw-table conntrack zone rules for DNS' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l vnet -d 'Virtual network to capture, ifaceNameOrPrefix+:CIDR (e.g. docker0:172.17.0.0/16); repeatable' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l ip-family-mode -d 'IP family mode: dualstack or ipv4 (case-insensitive) [default: dualstack]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l iptables-logs -d 'Add LOG rules to nat PREROUTING and OUTPUT (kernel log, not rate-limited)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l disable-comments -d 'Write rules without -m comment (they are still found by the receipt)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l drop-invalid-packets -d 'Drop packets in conntrack state INVALID (mangle PREROUTING)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l receipt -d 'Install receipt (JSON), or `none` to keep no state [default: /var/lib/tproxyctl/receipt.json]' -r -F
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l user -d 'Run as this user (name or UID) after binding the listeners; must be the UID the rules exempt' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l forwarder-config -d 'Forwarder settings file (YAML or JSON: maxConnections, maxPendingRequests, maxRequests, maxRetries, connectTimeout, idleTimeout, drainTimeout, adminAddress, accessLog, dns, workers, user, dataplanes, localDataplane, meshName, clientKeepalive)' -r -F
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l policy -d 'Policy file (ProxyTemplate, MeshProxyPatch, Mesh, MeshPassthrough; YAML, several documents allowed). Repeatable' -r -F
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l dataplane -d 'Universal Dataplane file of the mesh (YAML or JSON, several documents or a kumactl list allowed), or a directory whose *.yaml, *.yml and *.json files are read in name order: its inbounds\' address:port are mesh destinations and answer <service>.mesh. Repeatable' -r -F
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l mesh-name -d 'This proxy\'s mesh when no Dataplane file decides it: policies of other meshes are ignored [default: default]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l local-dataplane -d 'This proxy\'s own Dataplane: its mesh, reachableServices / reachableBackends and inbounds apply [default: the --dataplane whose networking.address is an address of this host]' -r -F
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l max-connections -d 'Most concurrent connections per cluster [default: 1024]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l max-pending-requests -d 'Most connections per cluster waiting for their upstream connect [default: 1024]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l max-requests -d 'Most concurrent relayed streams per cluster (one per TCP connection) [default: 1024]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l max-retries -d 'Most upstream connect retries per connection, and in flight per cluster [default: 3]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l connect-timeout -d 'Upstream connect timeout, e.g. 10s or 500ms [default: 10s]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l idle-timeout -d 'Close a connection after this long without data either way, e.g. 1h; 0 disables it [default: 1h]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l drain-timeout -d 'On SIGTERM, how long open connections may go on before the forwarder exits [default: 5s]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l admin-address -d 'Admin address serving GET /stats (Prometheus text), GET /config (JSON) and GET /ready; "off" disables it [default: 127.0.0.1:9901]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l access-log -d 'Write one line per finished connection to this file, or - for stdout' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l dns -d 'Run the DNS proxy on the DNS port even when DNS redirection is not configured' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l workers -d 'Worker threads (1 runs everything on one thread) [default: the CPUs this process may use]' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l log-level -d 'kumactl\'s own log level (off, info, debug)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l context -d 'kumactl\'s control-plane context' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l no-config -d 'kumactl: do not read its own configuration' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l api-timeout -d 'kumactl\'s control-plane API timeout' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -l print-config -d 'Print the effective settings (per-cluster limits and timeouts, passthrough, mesh services and their addresses) as YAML and exit'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -s q -l quiet -d 'Print errors only: no progress, notes or warnings on stderr (data on stdout is unchanged)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -s h -l help -d 'Print help'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand forwarder" -s V -l version -d 'Print version'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand completion" -l log-level -d 'kumactl\'s own log level (off, info, debug)' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand completion" -l context -d 'kumactl\'s control-plane context' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand completion" -l no-config -d 'kumactl: do not read its own configuration' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand completion" -l api-timeout -d 'kumactl\'s control-plane API timeout' -r
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand completion" -s q -l quiet -d 'Print errors only: no progress, notes or warnings on stderr (data on stdout is unchanged)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand completion" -s h -l help -d 'Print help'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand completion" -s V -l version -d 'Print version'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand help; and not __fish_seen_subcommand_from install uninstall verify status generate forwarder completion help" -f -a "install" -d 'Install the transparent proxy rules or the validator'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand help; and not __fish_seen_subcommand_from install uninstall verify status generate forwarder completion help" -f -a "uninstall" -d 'Remove what an install put on the host'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand help; and not __fish_seen_subcommand_from install uninstall verify status generate forwarder completion help" -f -a "verify" -d 'Prove, end to end in a throwaway network namespace, that the installed rules redirect what they should'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand help; and not __fish_seen_subcommand_from install uninstall verify status generate forwarder completion help" -f -a "status" -d 'Show what is installed, by which backend, rule counters and drift against the receipt'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand help; and not __fish_seen_subcommand_from install uninstall verify status generate forwarder completion help" -f -a "generate" -d 'Generate resources that match the installed rules'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand help; and not __fish_seen_subcommand_from install uninstall verify status generate forwarder completion help" -f -a "forwarder" -d 'Run the bundled forwarder on the redirect ports'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand help; and not __fish_seen_subcommand_from install uninstall verify status generate forwarder completion help" -f -a "completion" -d 'Print a shell completion script'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand help; and not __fish_seen_subcommand_from install uninstall verify status generate forwarder completion help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand help; and __fish_seen_subcommand_from install" -f -a "transparent-proxy" -d 'Install the transparent proxy iptables rules (kumactl-compatible flags)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand help; and __fish_seen_subcommand_from install" -f -a "transparent-proxy-validator" -d 'Check that the hairpin redirect works (kumactl-compatible validator)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand help; and __fish_seen_subcommand_from uninstall" -f -a "transparent-proxy" -d 'Remove the transparent proxy rules, and only those'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand help; and __fish_seen_subcommand_from uninstall" -f -a "ebpf" -d 'Detach and unpin the eBPF programs of an eBPF-mode install (kumactl\'s `uninstall ebpf`)'
complete -c tproxyctl -n "__fish_tproxyctl_using_subcommand help; and __fish_seen_subcommand_from generate" -f -a "dataplane" -d 'Render the Universal Dataplane resource that matches the rules'
