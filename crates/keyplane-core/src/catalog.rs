//! The built-in regions, zones and image catalog an empty store starts with.
//!
//! The catalog has Linux images with the agent, a Windows image, and a Linux image without the
//! agent, because the vendors' per-instance error paths need all three.

use crate::model::{Image, OsType, Region};

pub const REGIONS: &[Region] = &[
    Region {
        id: "cn-hangzhou",
        local_name: "华东1（杭州）",
        zones: &["cn-hangzhou-h", "cn-hangzhou-i", "cn-hangzhou-j"],
    },
    Region {
        id: "cn-shanghai",
        local_name: "华东2（上海）",
        zones: &["cn-shanghai-e", "cn-shanghai-f", "cn-shanghai-g"],
    },
    Region {
        id: "cn-beijing",
        local_name: "华北2（北京）",
        zones: &["cn-beijing-a", "cn-beijing-g", "cn-beijing-h"],
    },
    Region {
        id: "ap-southeast-1",
        local_name: "新加坡",
        zones: &["ap-southeast-1a", "ap-southeast-1b", "ap-southeast-1c"],
    },
];

pub const IMAGES: &[Image] = &[
    Image {
        id: "aliyun_3_x64_20G_alibase_20240819.vhd",
        name: "Alibaba Cloud Linux 3.2104 LTS 64-bit",
        os_type: OsType::Linux,
        os_name: "Alibaba Cloud Linux 3.2104 LTS 64位",
        platform: "Aliyun",
        agent_installed: true,
        size_gib: 20,
    },
    Image {
        id: "ubuntu_22_04_x64_20G_alibase_20240130.vhd",
        name: "Ubuntu 22.04 64-bit",
        os_type: OsType::Linux,
        os_name: "Ubuntu  22.04 64位",
        platform: "Ubuntu",
        agent_installed: true,
        size_gib: 20,
    },
    Image {
        id: "debian_12_x64_20G_alibase_20240717.vhd",
        name: "Debian 12 64-bit",
        os_type: OsType::Linux,
        os_name: "Debian  12.6 64位",
        platform: "Debian",
        agent_installed: true,
        size_gib: 20,
    },
    Image {
        id: "centos_7_9_x64_20G_noagent_20200101.vhd",
        name: "CentOS 7.9 64-bit (custom image without the agent)",
        os_type: OsType::Linux,
        os_name: "CentOS  7.9 64位",
        platform: "CentOS",
        agent_installed: false,
        size_gib: 20,
    },
    Image {
        id: "win2022_21H2_x64_dtc_en-us_40G_alibase_20240816.vhd",
        name: "Windows Server 2022 Datacenter 64-bit (English)",
        os_type: OsType::Windows,
        os_name: "Windows Server  2022 数据中心版 64位英文版",
        platform: "Windows Server 2022",
        agent_installed: true,
        size_gib: 40,
    },
];

pub fn region(id: &str) -> Option<&'static Region> {
    REGIONS.iter().find(|r| r.id == id)
}

pub fn image(id: &str) -> Option<&'static Image> {
    IMAGES.iter().find(|i| i.id == id)
}

/// vCPUs and memory (MiB) for an instance type; unknown types get a small default.
pub fn instance_type_size(instance_type: &str) -> (u32, u32) {
    match instance_type.rsplit('.').next() {
        Some("small") => (1, 2048),
        Some("large") => (2, 8192),
        Some("xlarge") => (4, 16384),
        Some("2xlarge") => (8, 32768),
        _ => (2, 4096),
    }
}
