-- WhatsApp and SMS contacts: the contact table's channel check admits them.
alter table contact drop constraint contact_channel_check;
alter table contact add constraint contact_channel_check
    check (channel in ('phone', 'webrtc', 'chat', 'whatsapp', 'sms'));
