//! The RT parameter catalogue: event types and the optional fields with
//! their documented length limits.

use serde::{Deserialize, Serialize};

use super::DEFAULT_MAX_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Click,
    Impression,
    /// A conversion posted back as `install` (`/v1/postback`).
    Install,
    /// A conversion posted back under a goal's name (`purchase`, ...):
    /// the FraudScore Data API's `custom` event; the name is `goal`.
    Custom,
}

impl EventType {
    /// In discriminant order (the decision log stores the index).
    pub const ALL: [EventType; 4] = [
        EventType::Click,
        EventType::Impression,
        EventType::Install,
        EventType::Custom,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::Click => "click",
            EventType::Impression => "impression",
            EventType::Install => "install",
            EventType::Custom => "custom",
        }
    }

    /// A conversion (posted back), not a click or an impression.
    pub const fn is_conversion(self) -> bool {
        matches!(self, EventType::Install | EventType::Custom)
    }
}

/// The optional RT parameters, forwarded upstream when given, then the
/// fields a conversion carries (`/v1/postback`; never RT parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opt {
    AdvertiserId,
    AdvertiserName,
    AdvertiserManagerId,
    AdvertiserManagerName,
    AffiliateName,
    AffiliateManagerId,
    AffiliateManagerName,
    OfferName,
    AffSub1,
    AffSub2,
    AffSub3,
    AffSub4,
    AffSub5,
    CountryCode,
    DeviceOs,
    DeviceOsVersion,
    DeviceModel,
    DeviceBrand,
    Browser,
    BrowserVersion,
    DeviceLocale,
    Refer,
    UserMail,
    Idfa,
    AndroidId,
    Source,
    /// The click a conversion is credited to (its decision id).
    ClickId,
    /// A conversion's goal (`custom` events).
    Goal,
    Payout,
    Currency,
    /// Seconds from the click's time to the conversion's.
    Ctit,
    /// The tracker's own status for the conversion.
    Status,
    /// The impression a click follows (its decision id, from the `/imp`
    /// pixel's `X-Fraudgate-Id`): taken by the doors like an RT field,
    /// never sent to RT.
    ImpId,
}

impl Opt {
    /// The conversion fields (after the RT ones in [`Opt::ALL`]).
    pub const CONVERSION: [Opt; 6] = [
        Opt::ClickId,
        Opt::Goal,
        Opt::Payout,
        Opt::Currency,
        Opt::Ctit,
        Opt::Status,
    ];

    /// Whether RT documents the field (a parameter the doors take and
    /// forward upstream).
    pub const fn is_rt(self) -> bool {
        (self as usize) < Opt::ALL.len() - Opt::CONVERSION.len() - 1
    }

    /// Whether the doors take the field from their callers: RT's, and
    /// `imp_id`.
    pub const fn is_event_field(self) -> bool {
        self.is_rt() || matches!(self, Opt::ImpId)
    }

    /// Every field, in discriminant order (the decision log stores the
    /// index).
    pub const ALL: [Opt; 33] = [
        Opt::AdvertiserId,
        Opt::AdvertiserName,
        Opt::AdvertiserManagerId,
        Opt::AdvertiserManagerName,
        Opt::AffiliateName,
        Opt::AffiliateManagerId,
        Opt::AffiliateManagerName,
        Opt::OfferName,
        Opt::AffSub1,
        Opt::AffSub2,
        Opt::AffSub3,
        Opt::AffSub4,
        Opt::AffSub5,
        Opt::CountryCode,
        Opt::DeviceOs,
        Opt::DeviceOsVersion,
        Opt::DeviceModel,
        Opt::DeviceBrand,
        Opt::Browser,
        Opt::BrowserVersion,
        Opt::DeviceLocale,
        Opt::Refer,
        Opt::UserMail,
        Opt::Idfa,
        Opt::AndroidId,
        Opt::Source,
        Opt::ClickId,
        Opt::Goal,
        Opt::Payout,
        Opt::Currency,
        Opt::Ctit,
        Opt::Status,
        Opt::ImpId,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Opt::AdvertiserId => "advertiser_id",
            Opt::AdvertiserName => "advertiser_name",
            Opt::AdvertiserManagerId => "advertiser_manager_id",
            Opt::AdvertiserManagerName => "advertiser_manager_name",
            Opt::AffiliateName => "affiliate_name",
            Opt::AffiliateManagerId => "affiliate_manager_id",
            Opt::AffiliateManagerName => "affiliate_manager_name",
            Opt::OfferName => "offer_name",
            Opt::AffSub1 => "aff_sub1",
            Opt::AffSub2 => "aff_sub2",
            Opt::AffSub3 => "aff_sub3",
            Opt::AffSub4 => "aff_sub4",
            Opt::AffSub5 => "aff_sub5",
            Opt::CountryCode => "country_code",
            Opt::DeviceOs => "device_os",
            Opt::DeviceOsVersion => "device_os_version",
            Opt::DeviceModel => "device_model",
            Opt::DeviceBrand => "device_brand",
            Opt::Browser => "browser",
            Opt::BrowserVersion => "browser_version",
            Opt::DeviceLocale => "device_locale",
            Opt::Refer => "refer",
            Opt::UserMail => "user_mail",
            Opt::Idfa => "idfa",
            Opt::AndroidId => "android_id",
            Opt::Source => "source",
            Opt::ClickId => "click_id",
            Opt::Goal => "goal",
            Opt::Payout => "payout",
            Opt::Currency => "currency",
            Opt::Ctit => "ctit",
            Opt::Status => "status",
            Opt::ImpId => "imp_id",
        }
    }

    /// The RT document's length limit, in characters.
    pub const fn max_len(self) -> usize {
        match self {
            Opt::Refer => 1024,
            Opt::CountryCode => 2,
            _ => DEFAULT_MAX_LEN,
        }
    }
}
