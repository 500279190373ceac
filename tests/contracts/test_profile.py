"""The tuning profile: defaults from the vCPU count, validation, the profile file."""

from __future__ import annotations

import pytest

from contracts.profile import (
    DEFAULT_SYSCTLS,
    ProfileError,
    TuningProfile,
    cpulist,
    cpumask,
    load_profile,
    parse_cpulist,
    profile_file,
)


@pytest.mark.parametrize(
    ("vcpus", "housekeeping", "isolated"),
    [
        (2, (0,), (1,)),
        (4, (0,), (1, 2, 3)),
        (8, (0,), tuple(range(1, 8))),
        (16, (0, 1), tuple(range(2, 16))),
    ],
)
def test_defaults_follow_the_vcpu_count(vcpus, housekeeping, isolated):
    p = TuningProfile.for_vcpus(vcpus)
    assert p.housekeeping == housekeeping and p.isolated == isolated
    assert p.nic_queues == len(housekeeping)


def test_c6g_xlarge_kernel_args_and_stage_cores():
    p = TuningProfile.for_vcpus(4)
    assert p.kernel_args() == [
        "isolcpus=managed_irq,domain,1-3",
        "nohz_full=1-3",
        "rcu_nocbs=1-3",
        "irqaffinity=0",
        "skew_tick=1",
        "nosoftlockup",
        "transparent_hugepage=never",
        "hugepagesz=2M",
        "hugepages=512",
    ]
    assert p.stage_cores() == {"feed": 1, "engine": 2, "gateway": 3}
    assert TuningProfile.for_vcpus(3).stage_cores() == {"feed": 1, "engine": 2, "gateway": 2}
    assert TuningProfile.for_vcpus(2).stage_cores() == {"feed": 1, "engine": 1, "gateway": 1}
    assert not p.has_cpu_power_control  # Graviton: no governor, C-states or SMT


def test_dead_sysctls_are_not_in_the_defaults():
    for dead in ("kernel.sched_min_granularity_ns", "net.ipv4.tcp_low_latency", "vm.mlockall"):
        assert dead not in DEFAULT_SYSCTLS


@pytest.mark.parametrize(
    ("cpus", "text", "mask"),
    [((0,), "0", "1"), ((1, 2, 3), "1-3", "e"), ((0, 2, 3, 5), "0,2-3,5", "2d"), ((), "", "0")],
)
def test_cpulist_and_mask(cpus, text, mask):
    assert cpulist(cpus) == text and parse_cpulist(text) == cpus and cpumask(cpus) == mask


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"vcpus": 4, "housekeeping": (0,), "isolated": (0, 1)}, "both housekeeping and isolated"),
        ({"vcpus": 4, "housekeeping": (), "isolated": (1,)}, "housekeeping"),
        ({"vcpus": 4, "housekeeping": (0,), "isolated": ()}, "isolated"),
        ({"vcpus": 4, "housekeeping": (0,), "isolated": (1, 7)}, "do not exist"),
        ({"vcpus": 1, "housekeeping": (0,), "isolated": ()}, "at least 2"),
        ({"vcpus": 4, "housekeeping": (0,), "isolated": (1,), "platform": "arm"}, "platform"),
    ],
)
def test_bad_profiles_say_what_is_wrong(kwargs, words):
    with pytest.raises(ProfileError, match=words):
        TuningProfile(**kwargs)


def test_profile_file_overrides_and_rederives_the_cpu_split(tmp_path):
    path = tmp_path / "profile.toml"
    path.write_text('vcpus = 8\nhugepages = 1024\n[sysctls]\n"vm.stat_interval" = 300\n')
    p = load_profile(path, vcpus=2)
    assert p.vcpus == 8 and p.isolated == tuple(range(1, 8)) and p.hugepages == 1024
    assert p.sysctls["vm.stat_interval"] == "300"
    assert p.sysctls["kernel.numa_balancing"] == "0"  # the other defaults stay
    path.write_text('isolated = "2-3"\nhousekeeping = [0, 1]\n')
    p = load_profile(path, vcpus=4)
    assert p.isolated == (2, 3) and p.housekeeping == (0, 1)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("hugepagez = 3\n", "unknown key hugepagez"),
        ('hugepages = "many"\n', "hugepages = 'many'"),
        ("isolated = 5\n", "cpulist"),
        ("isolated = [0]\n", "both housekeeping and isolated"),
        ("[x\n", "not valid TOML"),
    ],
)
def test_bad_profile_files_name_the_file_and_key(tmp_path, content, words):
    path = tmp_path / "profile.toml"
    path.write_text(content)
    with pytest.raises(ProfileError) as exc:
        load_profile(path, vcpus=4)
    assert str(path) in str(exc.value) and words in str(exc.value)
    assert "\n" not in str(exc.value)


# ----------------------------------------------------------------------------- the exchange

EXCHANGE = {
    "exchange_market_data": "239.192.0.1:31001",
    "exchange_recovery": "10.50.0.10:31002",
    "exchange_orders": "10.50.0.10:31003",
    "exchange_cidrs": ("10.50.0.0/24", "fd00:50::/64"),
}


def test_an_exchange_round_trips_through_the_profile_file(tmp_path):
    p = TuningProfile.for_vcpus(4, **EXCHANGE, exchange_session="ACME")
    path = tmp_path / "profile.toml"
    path.write_text(profile_file(p, "a profile"))
    back = load_profile(path, vcpus=4)
    assert back == p and back.exchange == p.exchange
    assert p.exchange is not None and p.exchange.group == p.exchange.market_data
    assert p.exchange.ip_versions == (4,)  # the ranges' IPv6 is no socket of the host's


def test_without_an_exchange_the_profile_file_is_as_before():
    text = profile_file(TuningProfile.for_vcpus(4), "a profile")
    assert "exchange" not in text
    assert TuningProfile.for_vcpus(4).exchange is None


def test_a_unicast_feed_is_this_hosts_own_address_outside_the_exchanges_ranges():
    p = TuningProfile.for_vcpus(4, **{**EXCHANGE, "exchange_market_data": "10.42.0.7:31001"})
    assert p.exchange is not None and p.exchange.group is None


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"exchange_orders": ""}, "exchange_orders: missing"),
        ({"exchange_orders": "10.51.0.1:31003"}, "exchange_orders: 10.51.0.1:31003 is outside"),
        ({"exchange_recovery": "exchange:31002"}, "exchange_recovery: 'exchange:31002':"),
        ({"exchange_cidrs": ()}, "exchange_cidrs: (): name the exchange's ranges"),
        ({"exchange_session": "x" * 11}, "exchange_session:"),
        ({"exchange_market_data": "[ff15::1]:1", "exchange_cidrs": ("10.50.0.0/24",)}, "IPv6"),
    ],
)
def test_bad_exchanges_in_a_profile_name_the_key(change, words):
    with pytest.raises(ProfileError) as exc:
        TuningProfile.for_vcpus(4, **{**EXCHANGE, **change})
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_a_profile_file_with_a_bad_exchange_names_file_and_key(tmp_path):
    path = tmp_path / "profile.toml"
    path.write_text('exchange_market_data = "239.192.0.1:31001"\nexchange_cidrs = "10.0.0.0/8"\n')
    with pytest.raises(ProfileError) as exc:
        load_profile(path, vcpus=4)
    assert str(exc.value).startswith(f"{path}: exchange_cidrs = '10.0.0.0/8': use a list")


def test_an_ipv4_group_pins_igmp_to_version_2_as_transit_gateway_multicast_needs():
    from ami.render import sysctl_conf

    key = "net.ipv4.conf.all.force_igmp_version"
    group = TuningProfile.for_vcpus(4, **EXCHANGE)
    assert group.sysctls[key] == "2"
    assert f"{key} = 2" in sysctl_conf(group) and "IGMPv2" in sysctl_conf(group)
    unicast = TuningProfile.for_vcpus(4, **{**EXCHANGE, "exchange_market_data": "10.9.0.1:1"})
    assert key not in unicast.sysctls and key not in TuningProfile.for_vcpus(4).sysctls
    # a profile that says otherwise keeps its own value
    own = TuningProfile.for_vcpus(4, **EXCHANGE, sysctls={**DEFAULT_SYSCTLS, key: "3"})
    assert own.sysctls[key] == "3"
