-- The helpline's fixed layout from the HIMS helpline plan: 45 seats, the last
-- 5 reserved for the 10:00-18:00 peak shift; three operator shifts (operators
-- do not work 22:00-06:00); a doctors' rota covering all 24 hours.

with recursive n(i) as (select 1 union all select i + 1 from n where i < 45)
insert into seat (seat_id, label, is_peak)
select i, 'S' || case when i < 10 then '0' || i else '' || i end, i > 40 from n;

insert into shift (name, role, starts_minute, ends_minute, is_peak) values
    ('operator-morning', 'operator', 360, 840, false),
    ('operator-evening', 'operator', 840, 1320, false),
    ('operator-peak', 'operator', 600, 1080, true),
    ('doctor-morning', 'doctor', 360, 840, false),
    ('doctor-evening', 'doctor', 840, 1320, false),
    ('doctor-night', 'doctor', 1320, 360, false);
