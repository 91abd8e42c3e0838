"""The CPU class beside every speed figure: read from /proc/cpuinfo text of the machines we know."""

from __future__ import annotations

import pytest

from spatialq_ros.bench.cpu_class import read_cpu_class

ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi1 bmi2 sha_ni vaes vpclmulqdq
processor\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi1 bmi2 sha_ni vaes vpclmulqdq
"""
CASCADE_LAKE = ("processor : 0\nmodel name : Intel(R) Xeon(R) Gold 6248\n"
                "flags : sse4_2 avx fma avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni\n")
SKYLAKE_SP = "processor : 0\nmodel name : Intel(R) Xeon(R) Gold 6148\nflags : avx fma avx2 avx512f avx512bw avx512vl\n"
ALDER_LAKE = "processor : 0\nmodel name : 12th Gen Intel(R) Core(TM) i7-1265UE\nflags : avx fma avx2 avx_vnni\n"
SAPPHIRE_RAPIDS = ("processor : 0\nmodel name : Intel(R) Xeon(R) Processor\n"
                   "flags : avx fma avx2 avx512f avx512bw avx512_vnni avx_vnni amx_bf16 amx_tile amx_int8\n")
ORIN = ("processor\t: 0\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp "
        "asimdhp cpuid asimdrdm lrcpc dcpop asimddp uscat ilrcpc flagm paca pacg\nCPU part\t: 0xd42\n") * 2
GRAVITON3 = "processor : 0\nFeatures : fp asimd asimddp sve i8mm bf16 svei8mm\n"
CORTEX_A72 = "processor : 0\nFeatures : fp asimd evtstrm crc32 cpuid\n"


@pytest.mark.parametrize("text, arch, name, cores", [
    (ZEN3, "x86_64", "x86 AVX2 without VNNI", 2),
    (CASCADE_LAKE, "x86_64", "x86 AVX-512 VNNI", 1),
    (SKYLAKE_SP, "x86_64", "x86 AVX-512 without VNNI", 1),
    (ALDER_LAKE, "x86_64", "x86 AVX-VNNI (AVX2)", 1),
    (SAPPHIRE_RAPIDS, "x86_64", "x86 AVX-512 VNNI + AMX-INT8", 1),
    (ORIN, "aarch64", "ARM dot-product", 2),
    (GRAVITON3, "aarch64", "ARM dot-product + i8mm + sve", 1),
    (CORTEX_A72, "aarch64", "ARM NEON without dot-product", 1),
])
def test_each_known_cpu_gets_its_int8_class(text, arch, name, cores):
    cpu = read_cpu_class(text, arch)
    assert cpu.name == name and cpu.cores == cores
    assert cpu.describe().startswith(name + " (") and cpu.as_dict()["class"] == name


def test_the_features_are_those_that_decide_int8_speed_and_the_model_is_kept():
    cpu = read_cpu_class(ZEN3, "x86_64")
    assert cpu.features == ("avx2", "fma") and cpu.model == "AMD EPYC 7B13"
    assert cpu.describe() == "x86 AVX2 without VNNI (AMD EPYC 7B13, 2 cores; avx2 fma)"
    assert read_cpu_class(ORIN, "aarch64").features == ("asimd", "asimddp")


def test_this_machine_has_a_class():
    cpu = read_cpu_class()
    assert cpu.name and cpu.cores >= 1 and cpu.describe().startswith(cpu.name)
