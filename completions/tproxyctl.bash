_tproxyctl() {
    local i cur prev opts cmd
    COMPREPLY=()
    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
        cur="$2"
    else
        cur="${COMP_WORDS[COMP_CWORD]}"
    fi
    prev="$3"
    cmd=""
    opts=""

    for i in "${COMP_WORDS[@]:0:COMP_CWORD}"
    do
        case "${cmd},${i}" in
            ",$1")
                cmd="tproxyctl"
                ;;
            tproxyctl,completion)
                cmd="tproxyctl__subcmd__completion"
                ;;
            tproxyctl,forwarder)
                cmd="tproxyctl__subcmd__forwarder"
                ;;
            tproxyctl,generate)
                cmd="tproxyctl__subcmd__generate"
                ;;
            tproxyctl,help)
                cmd="tproxyctl__subcmd__help"
                ;;
            tproxyctl,install)
                cmd="tproxyctl__subcmd__install"
                ;;
            tproxyctl,status)
                cmd="tproxyctl__subcmd__status"
                ;;
            tproxyctl,uninstall)
                cmd="tproxyctl__subcmd__uninstall"
                ;;
            tproxyctl,verify)
                cmd="tproxyctl__subcmd__verify"
                ;;
            tproxyctl__subcmd__generate,dataplane)
                cmd="tproxyctl__subcmd__generate__subcmd__dataplane"
                ;;
            tproxyctl__subcmd__generate,help)
                cmd="tproxyctl__subcmd__generate__subcmd__help"
                ;;
            tproxyctl__subcmd__generate__subcmd__help,dataplane)
                cmd="tproxyctl__subcmd__generate__subcmd__help__subcmd__dataplane"
                ;;
            tproxyctl__subcmd__generate__subcmd__help,help)
                cmd="tproxyctl__subcmd__generate__subcmd__help__subcmd__help"
                ;;
            tproxyctl__subcmd__help,completion)
                cmd="tproxyctl__subcmd__help__subcmd__completion"
                ;;
            tproxyctl__subcmd__help,forwarder)
                cmd="tproxyctl__subcmd__help__subcmd__forwarder"
                ;;
            tproxyctl__subcmd__help,generate)
                cmd="tproxyctl__subcmd__help__subcmd__generate"
                ;;
            tproxyctl__subcmd__help,help)
                cmd="tproxyctl__subcmd__help__subcmd__help"
                ;;
            tproxyctl__subcmd__help,install)
                cmd="tproxyctl__subcmd__help__subcmd__install"
                ;;
            tproxyctl__subcmd__help,status)
                cmd="tproxyctl__subcmd__help__subcmd__status"
                ;;
            tproxyctl__subcmd__help,uninstall)
                cmd="tproxyctl__subcmd__help__subcmd__uninstall"
                ;;
            tproxyctl__subcmd__help,verify)
                cmd="tproxyctl__subcmd__help__subcmd__verify"
                ;;
            tproxyctl__subcmd__help__subcmd__generate,dataplane)
                cmd="tproxyctl__subcmd__help__subcmd__generate__subcmd__dataplane"
                ;;
            tproxyctl__subcmd__help__subcmd__install,transparent-proxy)
                cmd="tproxyctl__subcmd__help__subcmd__install__subcmd__transparent__subcmd__proxy"
                ;;
            tproxyctl__subcmd__help__subcmd__install,transparent-proxy-validator)
                cmd="tproxyctl__subcmd__help__subcmd__install__subcmd__transparent__subcmd__proxy__subcmd__validator"
                ;;
            tproxyctl__subcmd__help__subcmd__uninstall,ebpf)
                cmd="tproxyctl__subcmd__help__subcmd__uninstall__subcmd__ebpf"
                ;;
            tproxyctl__subcmd__help__subcmd__uninstall,transparent-proxy)
                cmd="tproxyctl__subcmd__help__subcmd__uninstall__subcmd__transparent__subcmd__proxy"
                ;;
            tproxyctl__subcmd__install,help)
                cmd="tproxyctl__subcmd__install__subcmd__help"
                ;;
            tproxyctl__subcmd__install,transparent-proxy)
                cmd="tproxyctl__subcmd__install__subcmd__transparent__subcmd__proxy"
                ;;
            tproxyctl__subcmd__install,transparent-proxy-validator)
                cmd="tproxyctl__subcmd__install__subcmd__transparent__subcmd__proxy__subcmd__validator"
                ;;
            tproxyctl__subcmd__install__subcmd__help,help)
                cmd="tproxyctl__subcmd__install__subcmd__help__subcmd__help"
                ;;
            tproxyctl__subcmd__install__subcmd__help,transparent-proxy)
                cmd="tproxyctl__subcmd__install__subcmd__help__subcmd__transparent__subcmd__proxy"
                ;;
            tproxyctl__subcmd__install__subcmd__help,transparent-proxy-validator)
                cmd="tproxyctl__subcmd__install__subcmd__help__subcmd__transparent__subcmd__proxy__subcmd__validator"
                ;;
            tproxyctl__subcmd__uninstall,ebpf)
                cmd="tproxyctl__subcmd__uninstall__subcmd__ebpf"
                ;;
            tproxyctl__subcmd__uninstall,help)
                cmd="tproxyctl__subcmd__uninstall__subcmd__help"
                ;;
            tproxyctl__subcmd__uninstall,transparent-proxy)
                cmd="tproxyctl__subcmd__uninstall__subcmd__transparent__subcmd__proxy"
                ;;
            tproxyctl__subcmd__uninstall__subcmd__help,ebpf)
                cmd="tproxyctl__subcmd__uninstall__subcmd__help__subcmd__ebpf"
                ;;
            tproxyctl__subcmd__uninstall__subcmd__help,help)
                cmd="tproxyctl__subcmd__uninstall__subcmd__help__subcmd__help"
                ;;
            tproxyctl__subcmd__uninstall__subcmd__help,transparent-proxy)
                cmd="tproxyctl__subcmd__uninstall__subcmd__help__subcmd__transparent__subcmd__proxy"
                ;;
            *)
                ;;
        esac
    done

    case "${cmd}" in
        tproxyctl)
            opts="-q -h -V --quiet --log-level --context --no-config --api-timeout --help --version install uninstall verify status generate forwarder completion help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 1 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --log-level)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --context)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --no-config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --api-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__completion)
            opts="-q -h -V --quiet --log-level --context --no-config --api-timeout --help --version bash zsh fish"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --log-level)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --context)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --no-config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --api-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__forwarder)
            opts="-q -h -V --config --config-file --kuma-dp-user --kuma-dp-uid --redirect-inbound --redirect-inbound-port --redirect-outbound-port --exclude-inbound-ports --exclude-outbound-ports --exclude-inbound-ips --exclude-outbound-ips --exclude-outbound-ports-for-uids --redirect-inbound-insert-instead-of-append --redirect-outbound-insert-instead-of-append --redirect-dns --redirect-all-dns-traffic --redirect-dns-port --skip-dns-conntrack-zone-split --vnet --ip-family-mode --iptables-logs --disable-comments --drop-invalid-packets --receipt --user --print-config --forwarder-config --policy --dataplane --mesh-name --local-dataplane --max-connections --max-pending-requests --max-requests --max-retries --connect-timeout --idle-timeout --drain-timeout --admin-address --access-log --dns --workers --quiet --log-level --context --no-config --api-timeout --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --config-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --kuma-dp-user)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --kuma-dp-uid)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-inbound)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-inbound-port)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-outbound-port)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exclude-inbound-ports)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exclude-outbound-ports)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exclude-inbound-ips)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exclude-outbound-ips)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exclude-outbound-ports-for-uids)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-inbound-insert-instead-of-append)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-outbound-insert-instead-of-append)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-dns)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-all-dns-traffic)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-dns-port)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --skip-dns-conntrack-zone-split)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --vnet)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ip-family-mode)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --iptables-logs)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --disable-comments)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --drop-invalid-packets)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --receipt)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --user)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --forwarder-config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --policy)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --dataplane)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --mesh-name)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --local-dataplane)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-connections)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-pending-requests)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-requests)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-retries)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --connect-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --idle-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --drain-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --admin-address)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --access-log)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --dns)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --workers)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --log-level)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --context)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --no-config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --api-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__generate)
            opts="-q -h -V --quiet --log-level --context --no-config --api-timeout --help --version dataplane help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --log-level)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --context)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --no-config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --api-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__generate__subcmd__dataplane)
            opts="-v -o -q -h -V --config --config-file --kuma-dp-user --kuma-dp-uid --redirect-inbound --redirect-inbound-port --redirect-outbound-port --exclude-inbound-ports --exclude-outbound-ports --exclude-inbound-ips --exclude-outbound-ips --exclude-outbound-ports-for-uids --redirect-inbound-insert-instead-of-append --redirect-outbound-insert-instead-of-append --redirect-dns --redirect-all-dns-traffic --redirect-dns-port --skip-dns-conntrack-zone-split --vnet --ip-family-mode --iptables-logs --disable-comments --drop-invalid-packets --receipt --name --mesh --address --port --service-port --service-address --service --tag --protocol --reachable-service --reachable-backend --reachable-backends --transparent-proxying --template --dataplane-var --output --check --require-service-tag --quiet --log-level --context --no-config --api-timeout --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --config-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --kuma-dp-user)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --kuma-dp-uid)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-inbound)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-inbound-port)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-outbound-port)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exclude-inbound-ports)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exclude-outbound-ports)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exclude-inbound-ips)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exclude-outbound-ips)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exclude-outbound-ports-for-uids)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-inbound-insert-instead-of-append)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-outbound-insert-instead-of-append)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-dns)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-all-dns-traffic)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-dns-port)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --skip-dns-conntrack-zone-split)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --vnet)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ip-family-mode)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --iptables-logs)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --disable-comments)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --drop-invalid-packets)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --receipt)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --name)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --mesh)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --address)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --port)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --service-port)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --service-address)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --service)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --tag)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --protocol)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --reachable-service)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --reachable-backend)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --reachable-backends)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --transparent-proxying)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --template)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --dataplane-var)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -v)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --output)
                    COMPREPLY=($(compgen -W "yaml json kubernetes-annotations" -- "${cur}"))
                    return 0
                    ;;
                -o)
                    COMPREPLY=($(compgen -W "yaml json kubernetes-annotations" -- "${cur}"))
                    return 0
                    ;;
                --check)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --log-level)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --context)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --no-config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --api-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__generate__subcmd__help)
            opts="dataplane help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__generate__subcmd__help__subcmd__dataplane)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__generate__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__help)
            opts="install uninstall verify status generate forwarder completion help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__help__subcmd__completion)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__help__subcmd__forwarder)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__help__subcmd__generate)
            opts="dataplane"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__help__subcmd__generate__subcmd__dataplane)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__help__subcmd__install)
            opts="transparent-proxy transparent-proxy-validator"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__help__subcmd__install__subcmd__transparent__subcmd__proxy)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__help__subcmd__install__subcmd__transparent__subcmd__proxy__subcmd__validator)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__help__subcmd__status)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__help__subcmd__uninstall)
            opts="transparent-proxy ebpf"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__help__subcmd__uninstall__subcmd__ebpf)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__help__subcmd__uninstall__subcmd__transparent__subcmd__proxy)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__help__subcmd__verify)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__install)
            opts="-q -h -V --quiet --log-level --context --no-config --api-timeout --help --version transparent-proxy transparent-proxy-validator help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --log-level)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --context)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --no-config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --api-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__install__subcmd__help)
            opts="transparent-proxy transparent-proxy-validator help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__install__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__install__subcmd__help__subcmd__transparent__subcmd__proxy)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__install__subcmd__help__subcmd__transparent__subcmd__proxy__subcmd__validator)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__install__subcmd__transparent__subcmd__proxy)
            opts="-o -q -h -V --config --config-file --kuma-dp-user --kuma-dp-uid --redirect-inbound --redirect-inbound-port --redirect-outbound-port --exclude-inbound-ports --exclude-outbound-ports --exclude-inbound-ips --exclude-outbound-ips --exclude-outbound-ports-for-uids --redirect-inbound-insert-instead-of-append --redirect-outbound-insert-instead-of-append --redirect-dns --redirect-all-dns-traffic --redirect-dns-port --skip-dns-conntrack-zone-split --vnet --ip-family-mode --iptables-logs --disable-comments --drop-invalid-packets --dry-run --verbose --store-firewalld --wait --wait-interval --max-retries --sleep-between-retries --iptables-executables --firewalld-direct-file --ebpf-enabled --ebpf-instance-ip --ebpf-programs-source-path --ebpf-bpffs-path --ebpf-cgroup-path --ebpf-tc-attach-iface --ebpf-allow-cgroup-root --receipt --from-receipt --output --quiet --log-level --context --no-config --api-timeout --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --config-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --kuma-dp-user)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --kuma-dp-uid)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-inbound)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-inbound-port)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-outbound-port)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exclude-inbound-ports)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exclude-outbound-ports)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exclude-inbound-ips)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exclude-outbound-ips)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exclude-outbound-ports-for-uids)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-inbound-insert-instead-of-append)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-outbound-insert-instead-of-append)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-dns)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-all-dns-traffic)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-dns-port)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --skip-dns-conntrack-zone-split)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --vnet)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ip-family-mode)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --iptables-logs)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --disable-comments)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --drop-invalid-packets)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --dry-run)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --verbose)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --store-firewalld)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --wait)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --wait-interval)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-retries)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --sleep-between-retries)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --iptables-executables)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --firewalld-direct-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ebpf-enabled)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ebpf-instance-ip)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ebpf-programs-source-path)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ebpf-bpffs-path)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ebpf-cgroup-path)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ebpf-tc-attach-iface)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ebpf-allow-cgroup-root)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --receipt)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --from-receipt)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --output)
                    COMPREPLY=($(compgen -W "text json" -- "${cur}"))
                    return 0
                    ;;
                -o)
                    COMPREPLY=($(compgen -W "text json" -- "${cur}"))
                    return 0
                    ;;
                --log-level)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --context)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --no-config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --api-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__install__subcmd__transparent__subcmd__proxy__subcmd__validator)
            opts="-q -h -V --ip-family-mode --validation-server-port --transparent-proxy-config --config-file --quiet --log-level --context --no-config --api-timeout --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --ip-family-mode)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --validation-server-port)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --transparent-proxy-config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --config-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --log-level)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --context)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --no-config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --api-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__status)
            opts="-o -q -h -V --receipt --output --dataplane --quiet --log-level --context --no-config --api-timeout --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --receipt)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --output)
                    COMPREPLY=($(compgen -W "text json" -- "${cur}"))
                    return 0
                    ;;
                -o)
                    COMPREPLY=($(compgen -W "text json" -- "${cur}"))
                    return 0
                    ;;
                --dataplane)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --log-level)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --context)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --no-config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --api-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__uninstall)
            opts="-q -h -V --quiet --log-level --context --no-config --api-timeout --help --version transparent-proxy ebpf help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --log-level)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --context)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --no-config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --api-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__uninstall__subcmd__ebpf)
            opts="-q -h -V --ebpf-bpffs-path --bpffs-path --dry-run --receipt --timeout --namespace --remove-only --cleanup-image-registry --cleanup-image-repository --cleanup-image-tag --cleanup-job-name --quiet --log-level --context --no-config --api-timeout --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --bpffs-path)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ebpf-bpffs-path)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --dry-run)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --receipt)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --namespace)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --remove-only)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --cleanup-image-registry)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --cleanup-image-repository)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --cleanup-image-tag)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --cleanup-job-name)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --log-level)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --context)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --no-config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --api-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__uninstall__subcmd__help)
            opts="transparent-proxy ebpf help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__uninstall__subcmd__help__subcmd__ebpf)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__uninstall__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__uninstall__subcmd__help__subcmd__transparent__subcmd__proxy)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__uninstall__subcmd__transparent__subcmd__proxy)
            opts="-q -h -V --config --config-file --kuma-dp-user --kuma-dp-uid --redirect-inbound --redirect-inbound-port --redirect-outbound-port --exclude-inbound-ports --exclude-outbound-ports --exclude-inbound-ips --exclude-outbound-ips --exclude-outbound-ports-for-uids --redirect-inbound-insert-instead-of-append --redirect-outbound-insert-instead-of-append --redirect-dns --redirect-all-dns-traffic --redirect-dns-port --skip-dns-conntrack-zone-split --vnet --ip-family-mode --iptables-logs --disable-comments --drop-invalid-packets --dry-run --verbose --store-firewalld --wait --wait-interval --max-retries --sleep-between-retries --iptables-executables --firewalld-direct-file --ebpf-enabled --ebpf-instance-ip --ebpf-programs-source-path --ebpf-bpffs-path --ebpf-cgroup-path --ebpf-tc-attach-iface --ebpf-allow-cgroup-root --receipt --quiet --log-level --context --no-config --api-timeout --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --config-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --kuma-dp-user)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --kuma-dp-uid)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-inbound)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-inbound-port)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-outbound-port)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exclude-inbound-ports)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exclude-outbound-ports)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exclude-inbound-ips)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exclude-outbound-ips)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --exclude-outbound-ports-for-uids)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-inbound-insert-instead-of-append)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-outbound-insert-instead-of-append)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-dns)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-all-dns-traffic)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --redirect-dns-port)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --skip-dns-conntrack-zone-split)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --vnet)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ip-family-mode)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --iptables-logs)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --disable-comments)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --drop-invalid-packets)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --dry-run)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --verbose)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --store-firewalld)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --wait)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --wait-interval)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-retries)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --sleep-between-retries)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --iptables-executables)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --firewalld-direct-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ebpf-enabled)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ebpf-instance-ip)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ebpf-programs-source-path)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ebpf-bpffs-path)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ebpf-cgroup-path)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ebpf-tc-attach-iface)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ebpf-allow-cgroup-root)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --receipt)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --log-level)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --context)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --no-config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --api-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        tproxyctl__subcmd__verify)
            opts="-o -q -h -V --receipt --output --quiet --log-level --context --no-config --api-timeout --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --receipt)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --output)
                    COMPREPLY=($(compgen -W "text json" -- "${cur}"))
                    return 0
                    ;;
                -o)
                    COMPREPLY=($(compgen -W "text json" -- "${cur}"))
                    return 0
                    ;;
                --log-level)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --context)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --no-config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --api-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
    esac
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _tproxyctl -o nosort -o bashdefault -o default tproxyctl
else
    complete -F _tproxyctl -o bashdefault -o default tproxyctl
fi
