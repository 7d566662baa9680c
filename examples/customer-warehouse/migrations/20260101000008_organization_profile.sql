-- Each organization's profile as columns of the organizations table, kept by `pgdw worker`
-- (materialized columns): its plan tier, when it deployed its first instance, and how many
-- instances it runs now. No full refresh: a row is recomputed when its plan changes, or when
-- one of its instances is created or deleted; every other row stays as it is.

ALTER TABLE public.organizations
  ADD COLUMN plan_tier int, ADD COLUMN first_instance_at timestamptz, ADD COLUMN live_instances int;

CREATE FUNCTION organization_profile(o public.organizations)
RETURNS TABLE (plan_tier int, first_instance_at timestamptz, live_instances int)
LANGUAGE sql STABLE AS $$
  SELECT CASE o.plan WHEN 'enterprise' THEN 3 WHEN 'pro' THEN 2 ELSE 1 END,
         (SELECT min(i.created_at) FROM public.instances i WHERE i.organization_id = o.organization_id),
         (SELECT count(*)::int FROM public.instances i
           WHERE i.organization_id = o.organization_id AND i.deleted_at IS NULL)
$$;

SELECT pgdw.materialize('public.organizations', 'organization_profile', depends_on => '{plan}');

-- The counts also depend on the organization's instances: a created or deleted instance
-- makes its organization's row pending (on rows applied by replication too). Always, even
-- when the row is pending already: a worker may be computing it from before this change.
CREATE FUNCTION organization_instances_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE public.organizations SET materialized_at = NULL
   WHERE organization_id = NEW.organization_id;
  RETURN NULL;
END $$;
CREATE TRIGGER organization_instances_changed AFTER INSERT OR UPDATE OF deleted_at ON public.instances
  FOR EACH ROW EXECUTE FUNCTION organization_instances_changed();
ALTER TABLE public.instances ENABLE ALWAYS TRIGGER organization_instances_changed;
